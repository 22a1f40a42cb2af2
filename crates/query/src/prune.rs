//! Time pruning: every table's `TimeGenerated` is `coalesce(time, received)` (the event time,
//! or when trailwarden received the record if the source has none). A predicate on that
//! expression cannot use the Parquet statistics of either column, so this optimizer rule
//! rewrites a comparison of it with a constant into the equivalent
//! `time OP x OR (time IS NULL AND received OP x)`, which the segment scan can prune row groups
//! with (min/max of `time`, null count of `time`, min/max of `received`).

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Between, BinaryExpr, Case, Expr, LogicalPlan, Operator};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The rule (registered on every query session).
#[derive(Debug, Default)]
pub struct TimePruning;

impl OptimizerRule for TimePruning {
    fn name(&self) -> &str {
        "trailwarden_time_pruning"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Filter(_) | LogicalPlan::TableScan(_) => {
                plan.map_expressions(|e| e.transform_up(rewrite_expr))
            }
            _ => Ok(Transformed::no(plan)),
        }
    }
}

/// `(time, received)` when `e` is `coalesce(time, received)`, or the
/// `CASE WHEN time IS NOT NULL THEN time ELSE received END` DataFusion simplifies it into.
fn time_generated(e: &Expr) -> Option<(Expr, Expr)> {
    let (t, r) = match e {
        Expr::ScalarFunction(ScalarFunction { func, args })
            if func.name() == "coalesce" && args.len() == 2 =>
        {
            (&args[0], &args[1])
        }
        Expr::Case(Case {
            expr: None,
            when_then_expr,
            else_expr: Some(r),
        }) if when_then_expr.len() == 1 => {
            let (when, then) = &when_then_expr[0];
            match &**when {
                Expr::IsNotNull(x) if x == then => (&**then, &**r),
                _ => return None,
            }
        }
        _ => return None,
    };
    match (t, r) {
        (Expr::Column(tc), Expr::Column(rc)) if tc.name == "time" && rc.name == "received" => {
            Some((t.clone(), r.clone()))
        }
        _ => None,
    }
}

fn constant(e: &Expr) -> bool {
    matches!(e, Expr::Literal(..))
}

fn either(time: Expr, received: Expr, make: impl Fn(Expr) -> Expr) -> Expr {
    make(time.clone()).or(time.is_null().and(make(received)))
}

fn rewrite_expr(e: Expr) -> Result<Transformed<Expr>> {
    match &e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(
                op,
                Operator::Eq | Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            ) =>
        {
            let op = *op;
            if let (Some((t, r)), true) = (time_generated(left), constant(right)) {
                let x = (**right).clone();
                return Ok(Transformed::yes(either(t, r, |c| {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(c), op, Box::new(x.clone())))
                })));
            }
            if let (true, Some((t, r))) = (constant(left), time_generated(right)) {
                let x = (**left).clone();
                return Ok(Transformed::yes(either(t, r, |c| {
                    Expr::BinaryExpr(BinaryExpr::new(Box::new(x.clone()), op, Box::new(c)))
                })));
            }
            Ok(Transformed::no(e))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if constant(low) && constant(high) => match time_generated(expr) {
            Some((t, r)) => {
                let (low, high) = ((**low).clone(), (**high).clone());
                Ok(Transformed::yes(either(t, r, |c| {
                    c.between(low.clone(), high.clone())
                })))
            }
            None => Ok(Transformed::no(e)),
        },
        _ => Ok(Transformed::no(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::core::expr_fn::coalesce;
    use datafusion::prelude::{col, lit};

    #[test]
    fn comparison_with_a_constant_is_split_on_time_being_null() {
        let tg = coalesce(vec![col("time"), col("received")]);
        let out = rewrite_expr(tg.clone().gt_eq(lit(5i64))).map(|t| t.data);
        let want = col("time")
            .gt_eq(lit(5i64))
            .or(col("time").is_null().and(col("received").gt_eq(lit(5i64))));
        assert_eq!(out.ok(), Some(want));
        let flipped = rewrite_expr(lit(5i64).lt(tg.clone())).map(|t| t.data);
        let want = lit(5i64)
            .lt(col("time"))
            .or(col("time").is_null().and(lit(5i64).lt(col("received"))));
        assert_eq!(flipped.ok(), Some(want));
    }

    #[test]
    fn simplified_form_is_recognised_and_others_left_alone() {
        let other = coalesce(vec![col("received"), col("time")]).gt(lit(1i64));
        let out = rewrite_expr(other.clone()).map(|t| (t.transformed, t.data));
        assert_eq!(out.ok(), Some((false, other)));
        let case = Expr::Case(Case::new(
            None,
            vec![(Box::new(col("time").is_not_null()), Box::new(col("time")))],
            Some(Box::new(col("received"))),
        ));
        let out = rewrite_expr(case.lt(lit(5i64))).map(|t| t.data);
        let want = col("time")
            .lt(lit(5i64))
            .or(col("time").is_null().and(col("received").lt(lit(5i64))));
        assert_eq!(out.ok(), Some(want));
        let not_const = coalesce(vec![col("time"), col("received")]).gt(col("received"));
        let out = rewrite_expr(not_const.clone()).map(|t| t.transformed);
        assert_eq!(out.ok(), Some(false));
    }
}
