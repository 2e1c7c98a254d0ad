//! Spend, exactly: money (ISO 4217 currencies, decimal prices read as written, costs as
//! integers), price tables and the price in force at an instant, budgets over calendar periods,
//! and per-key figures summed into teams. Pure functions of their inputs; the collection hands
//! them Cloud Eye's datapoints, the emitters and the report take their results.

pub mod budget;
pub mod groups;
pub mod ledger;
pub mod money;
pub mod prices;

pub use budget::{Budget, Limit, Period, Scope};
pub use money::{Cost, Currency, Decimal};
pub use prices::{ModelPrice, Per, PriceTable, Schedule};
