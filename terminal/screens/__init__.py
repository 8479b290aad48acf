"""Counter screens: sign-in, sale, prescriptions, inventory."""
