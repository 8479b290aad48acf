-- A product this store's head office has not sent (imported at this terminal from the Orange
-- Book, the NDC Directory or a catalog file) is announced to the store, as a `product`
-- event, by the terminal that first receives stock of it: other terminals then know what
-- that stock is. `announced_at` is set once the store knows the product: received from head
-- office or another terminal, or announced from here. Products already on file when this
-- migration runs count as known (nothing is announced after the fact).

ALTER TABLE products ADD COLUMN announced_at TEXT;
UPDATE products SET announced_at = updated_at;
