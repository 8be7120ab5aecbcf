//! The order service's own data: products with their stock, and the orders taken.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// A product and how many are left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    /// The product id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// How many are in stock.
    pub stock: u32,
}

impl Product {
    /// A product with `stock` items.
    pub fn new(id: i64, name: impl Into<String>, stock: u32) -> Self {
        Product {
            id,
            name: name.into(),
            stock,
        }
    }
}

/// Why stock could not be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockError {
    /// No product has this id.
    UnknownProduct(i64),
    /// Fewer items are left than were asked for.
    Insufficient {
        /// The product.
        product: i64,
        /// How many are left.
        available: u32,
        /// How many were asked for.
        requested: u32,
    },
}

impl fmt::Display for StockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StockError::UnknownProduct(id) => write!(f, "product {id} does not exist"),
            StockError::Insufficient {
                product,
                available,
                requested,
            } => write!(
                f,
                "insufficient stock: product {product} has {available} left, {requested} requested"
            ),
        }
    }
}

impl std::error::Error for StockError {}

/// The products, with their stock. Checking and taking stock is one atomic step, so two
/// orders never get the last item.
#[derive(Debug, Default)]
pub struct ProductStore {
    products: Mutex<BTreeMap<i64, Product>>,
}

impl ProductStore {
    /// A store holding `products`.
    pub fn new(products: impl IntoIterator<Item = Product>) -> Self {
        ProductStore {
            products: Mutex::new(products.into_iter().map(|p| (p.id, p)).collect()),
        }
    }

    /// The demo catalogue: 1 Tea (10 left), 2 Coffee (1 left), 3 Cake (none left).
    pub fn sample() -> Self {
        ProductStore::new([
            Product::new(1, "Tea", 10),
            Product::new(2, "Coffee", 1),
            Product::new(3, "Cake", 0),
        ])
    }

    /// The product `id`, as it is now.
    pub fn get(&self, id: i64) -> Option<Product> {
        self.lock().get(&id).cloned()
    }

    /// Every product, by id.
    pub fn list(&self) -> Vec<Product> {
        self.lock().values().cloned().collect()
    }

    /// Takes `count` items of product `id` if that many are left, and returns the
    /// product as it is afterwards.
    pub fn take(&self, id: i64, count: u32) -> Result<Product, StockError> {
        let mut products = self.lock();
        let product = products
            .get_mut(&id)
            .ok_or(StockError::UnknownProduct(id))?;
        if product.stock < count {
            return Err(StockError::Insufficient {
                product: id,
                available: product.stock,
                requested: count,
            });
        }
        product.stock -= count;
        Ok(product.clone())
    }

    /// Puts `count` items of product `id` back (an order that could not go through).
    pub fn put_back(&self, id: i64, count: u32) {
        if let Some(product) = self.lock().get_mut(&id) {
            product.stock = product.stock.saturating_add(count);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Product>> {
        // The map is consistent after every statement, so a panic elsewhere cannot
        // leave it half-changed.
        self.products.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An order taken by the order service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The snowflake id, as a decimal string.
    pub order_id: String,
    /// The product bought.
    pub product_id: i64,
    /// How many.
    pub count: u32,
    /// The buyer.
    pub uid: i64,
}

/// The orders taken, in order.
#[derive(Debug, Default)]
pub struct OrderStore {
    orders: Mutex<Vec<Order>>,
}

impl OrderStore {
    /// An empty store.
    pub fn new() -> Self {
        OrderStore::default()
    }

    /// Records `order`.
    pub fn insert(&self, order: Order) {
        self.lock().push(order);
    }

    /// Removes the order `order_id` (one whose event could not be published).
    pub fn remove(&self, order_id: &str) -> Option<Order> {
        let mut orders = self.lock();
        let index = orders.iter().position(|o| o.order_id == order_id)?;
        Some(orders.remove(index))
    }

    /// The order `order_id`.
    pub fn get(&self, order_id: &str) -> Option<Order> {
        self.lock().iter().find(|o| o.order_id == order_id).cloned()
    }

    /// How many orders were taken.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no order was taken.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Order>> {
        self.orders.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_is_taken_only_when_enough_is_left() {
        let store = ProductStore::sample();
        assert_eq!(store.take(2, 1).expect("one coffee").stock, 0);
        assert_eq!(
            store.take(2, 1),
            Err(StockError::Insufficient {
                product: 2,
                available: 0,
                requested: 1
            })
        );
        assert_eq!(store.take(9, 1), Err(StockError::UnknownProduct(9)));
        store.put_back(2, 1);
        assert_eq!(store.get(2).map(|p| p.stock), Some(1));
    }
}
