"""Counter hardware: barcode scanners (keyboard wedge, serial / USB-CDC) and ESC/POS
printers (receipts, Rx labels, cash drawer). Qt-free; one thread owns each device."""
