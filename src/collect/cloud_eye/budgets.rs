//! The spec's budgets, from the plan's own Cloud Eye queries (one window from the period's start
//! to now per period and kind of scope): their series are never emitted, they are summed into
//! each budget's exact period-to-date use (tokens, or the cost of priced models), and its status
//! (`spend::budget::status`) goes out as `maas_budget`. A budget whose series were not all read
//! is not guessed: it is skipped this collection with a warning (the Cloud Eye budget comes
//! first).

use super::Series;
use crate::collect::{Collection, Failure, Series as Any};
use crate::domain::cloud_eye::{CloudEyeKey, COMPLETION_TOKENS, PROMPT_TOKENS};
use crate::domain::ApiError;
use crate::plan::cloud_eye::{BudgetPlan, Plan, QueryPlan};
use crate::spend::budget::{self, Amount, Budget, Limit, Point, Scope};

/// Takes the series (since `first`) and failures (since `failures`) this budget query settled
/// out of `out`, and puts its budgets' points (or a warning) in their place.
pub(super) fn settle(
    plan: &QueryPlan,
    b: &BudgetPlan,
    out: &mut Collection,
    (first, failures): (usize, usize),
    missing: &[(CloudEyeKey, ApiError)],
) {
    let series: Vec<Series> = out
        .series
        .drain(first..)
        .filter_map(|s| match s {
            Any::CloudEye(s) => Some(s),
            Any::Statistics(_) => None,
        })
        .collect();
    out.failures.truncate(failures);
    if let Some((key, error)) = missing.first() {
        let names: Vec<&str> = b.budgets.iter().map(|b| b.name.as_str()).collect();
        out.warnings.push(format!(
            "budget(s) {} skipped this collection: {} series of their period were not read ({key}: {error})",
            names.join(", "),
            missing.len()
        ));
        return;
    }
    let currency = plan.schedule.as_ref().map(|s| s.currency);
    for budget in &b.budgets {
        let used = used(budget, b, &series);
        let currency = match budget.limit {
            Limit::Amount(_) => currency,
            Limit::Tokens(_) => None,
        };
        out.budgets.push(Point {
            budget: budget.clone(),
            status: budget::status(budget.limit, used, b.bounds, b.now_ms),
            currency,
        });
    }
}

/// The failures of the budgets' own queries (their calls not afforded, their discovery failed)
/// as one warning per query: a budget is skipped, never a failed series of the spec's.
pub(super) fn failures_to_warnings(plan: &Plan, out: &mut Collection) {
    for q in plan.queries.iter().filter(|q| q.budgets.is_some()) {
        let (theirs, rest): (Vec<Failure>, Vec<Failure>) = std::mem::take(&mut out.failures)
            .into_iter()
            .partition(|f| f.query == q.name);
        out.failures = rest;
        let (Some(first), Some(b)) = (theirs.first(), &q.budgets) else {
            continue;
        };
        let names: Vec<&str> = b.budgets.iter().map(|b| b.name.as_str()).collect();
        out.warnings.push(format!(
            "budget(s) {} skipped this collection: {} series or parts of their period were not read ({}: {})",
            names.join(", "),
            theirs.len(),
            first.what,
            first.error
        ));
    }
}

/// A budget's exact use: the tokens or the cost of the series in its scope.
fn used(budget: &Budget, b: &BudgetPlan, series: &[Series]) -> Amount {
    let in_scope = |s: &&Series| match &budget.scope {
        Scope::Project => true,
        Scope::Model(m) => s.key.model.name == *m || s.key.model.id == *m,
        Scope::KeyGroup(g) => {
            let key = s.key.api_key.as_ref().map_or("", |k| k.name.as_str());
            b.groups.of(key).contains(&g.as_str())
        }
    };
    let mut units: u128 = 0;
    for s in series.iter().filter(in_scope) {
        units = units.saturating_add(match budget.limit {
            Limit::Amount(_) => s.cost.as_ref().map_or(0, |c| c.priced.total().femto),
            Limit::Tokens(_) => [PROMPT_TOKENS, COMPLETION_TOKENS]
                .iter()
                .map(|m| u128::from(s.count(m).unwrap_or(0)))
                .sum(),
        });
    }
    match budget.limit {
        Limit::Amount(_) => Amount::Money(crate::spend::Cost { femto: units }),
        Limit::Tokens(_) => Amount::Tokens(u64::try_from(units).unwrap_or(u64::MAX)),
    }
}
