//! Price intelligence, every 4 hours and on a price change (DOMAIN.md "Price intelligence"):
//! per product the current average, minimum, maximum and median across vendors, the 30-day
//! change, volatility 0–100, the trend, alerts for abnormal changes, and each vendor's
//! competitiveness against the average.

use serde::{Deserialize, Serialize};

use crate::Paisa;
use crate::vendor_score::median;

/// One recorded price change of a product at one vendor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceChange {
    /// Price before (per base unit).
    pub old_paisa: Paisa,
    /// Price after.
    pub new_paisa: Paisa,
}

impl PriceChange {
    /// Signed change in percent of the old price; `None` from a zero price.
    pub fn percent(self) -> Option<f64> {
        (self.old_paisa > 0)
            .then(|| (self.new_paisa - self.old_paisa) as f64 * 100.0 / self.old_paisa as f64)
    }
}

/// Direction of the 30-day change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// |Δ| < 2%.
    Stable,
    /// Δ ≥ 2%.
    Rising,
    /// Δ ≤ −2%.
    Falling,
}

impl Trend {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Stable => "stable",
            Trend::Rising => "rising",
            Trend::Falling => "falling",
        }
    }
}

/// Severity of an abnormal price change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSeverity {
    /// |Δ| ≥ 20%.
    Medium,
    /// |Δ| ≥ 35%.
    High,
    /// |Δ| ≥ 50%.
    Critical,
}

impl ChangeSeverity {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeSeverity::Medium => "medium",
            ChangeSeverity::High => "high",
            ChangeSeverity::Critical => "critical",
        }
    }
}

/// A vendor's price against the product's average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Competitiveness {
    /// ≤ average × 1.05.
    Excellent,
    /// ≤ × 1.10.
    Good,
    /// ≤ × 1.15.
    Fair,
    /// Above.
    Expensive,
}

impl Competitiveness {
    /// Its stable snake_case name (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            Competitiveness::Excellent => "excellent",
            Competitiveness::Good => "good",
            Competitiveness::Fair => "fair",
            Competitiveness::Expensive => "expensive",
        }
    }
}

/// What price intelligence says about one product.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PriceInsight {
    /// Vendors with a current price.
    pub vendors: usize,
    /// Average of the current prices, rounded to the paisa.
    pub average_paisa: Paisa,
    /// Lowest.
    pub min_paisa: Paisa,
    /// Highest.
    pub max_paisa: Paisa,
    /// Median, rounded to the paisa.
    pub median_paisa: Paisa,
    /// Change of the average over 30 days in percent; `None` without a price 30 days ago.
    pub change_30d_pct: Option<f64>,
    /// 0–100: half from how often prices changed (10 changes in 30 days or more = 50), half
    /// from how much (an average |Δ| of 20% or more = 50).
    pub volatility: u8,
    /// From the 30-day change (stable without one).
    pub trend: Trend,
}

/// The average of prices (never negative), rounded half up to the paisa; `None` for none.
/// Every average price in Khaacho is this one, so two averages of the same prices agree.
pub fn mean_paisa(prices: &[Paisa]) -> Option<Paisa> {
    if prices.is_empty() {
        return None;
    }
    let sum: i128 = prices.iter().map(|p| i128::from((*p).max(0))).sum();
    let n = prices.len() as i128;
    Some(Paisa::try_from((sum + n / 2) / n).unwrap_or(Paisa::MAX))
}

/// Summarises current prices, the average 30 days ago and the changes since.
/// `None` when no vendor has a current price.
pub fn insight(
    current: &[Paisa],
    average_30d_ago: Option<Paisa>,
    changes_30d: &[PriceChange],
) -> Option<PriceInsight> {
    let prices: Vec<Paisa> = current.iter().copied().filter(|p| *p > 0).collect();
    if prices.is_empty() {
        return None;
    }
    let average = mean_paisa(&prices)?;
    let as_f64: Vec<f64> = prices.iter().map(|p| *p as f64).collect();
    let change_30d_pct = average_30d_ago
        .filter(|a| *a > 0)
        .map(|a| (average - a) as f64 * 100.0 / a as f64);
    let sizes: Vec<f64> = changes_30d
        .iter()
        .filter_map(|c| c.percent())
        .map(f64::abs)
        .collect();
    let mean_size = if sizes.is_empty() {
        0.0
    } else {
        sizes.iter().sum::<f64>() / sizes.len() as f64
    };
    let frequency = (changes_30d.len() as f64 / 10.0).min(1.0) * 50.0;
    let size = (mean_size / 20.0).min(1.0) * 50.0;
    Some(PriceInsight {
        vendors: prices.len(),
        average_paisa: average,
        min_paisa: prices.iter().copied().min().unwrap_or(0),
        max_paisa: prices.iter().copied().max().unwrap_or(0),
        median_paisa: median(&as_f64).map_or(0, |m| m.round() as Paisa),
        change_30d_pct,
        volatility: (frequency + size).round() as u8,
        trend: trend(change_30d_pct),
    })
}

/// The trend of a change in percent.
pub fn trend(change_pct: Option<f64>) -> Trend {
    match change_pct {
        Some(c) if c >= 2.0 => Trend::Rising,
        Some(c) if c <= -2.0 => Trend::Falling,
        _ => Trend::Stable,
    }
}

/// The alert a price change deserves, if any.
pub fn change_alert(change: PriceChange) -> Option<ChangeSeverity> {
    let size = change.percent()?.abs();
    if size >= 50.0 {
        Some(ChangeSeverity::Critical)
    } else if size >= 35.0 {
        Some(ChangeSeverity::High)
    } else if size >= 20.0 {
        Some(ChangeSeverity::Medium)
    } else {
        None
    }
}

/// A vendor's price against the product's average (integer arithmetic, so the boundaries
/// are exact).
pub fn competitiveness(price: Paisa, average: Paisa) -> Competitiveness {
    let (p, a) = (i128::from(price) * 100, i128::from(average.max(0)));
    if p <= a * 105 {
        Competitiveness::Excellent
    } else if p <= a * 110 {
        Competitiveness::Good
    } else if p <= a * 115 {
        Competitiveness::Fair
    } else {
        Competitiveness::Expensive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(old: Paisa, new: Paisa) -> PriceChange {
        PriceChange {
            old_paisa: old,
            new_paisa: new,
        }
    }

    #[test]
    fn statistics_of_the_current_prices() {
        let i = insight(&[10_000, 12_000, 11_000, 20_000], Some(12_500), &[]).unwrap();
        assert_eq!(i.vendors, 4);
        assert_eq!(
            (i.average_paisa, i.min_paisa, i.max_paisa, i.median_paisa),
            (13_250, 10_000, 20_000, 11_500)
        );
        assert_eq!(i.change_30d_pct, Some(6.0));
        assert_eq!(i.trend, Trend::Rising);
        assert_eq!(i.volatility, 0);
        assert_eq!(insight(&[], None, &[]), None);
        assert_eq!(insight(&[10_000], None, &[]).unwrap().trend, Trend::Stable);
    }

    #[test]
    fn averages_round_half_up() {
        assert_eq!(mean_paisa(&[]), None);
        assert_eq!(mean_paisa(&[100, 101]), Some(101));
        assert_eq!(mean_paisa(&[100, 100, 101]), Some(100));
        assert_eq!(mean_paisa(&[100, 101, 101]), Some(101));
        assert_eq!(mean_paisa(&[i64::MAX, i64::MAX]), Some(i64::MAX));
    }

    #[test]
    fn trend_boundaries() {
        let cases = [
            (1.99, Trend::Stable),
            (2.0, Trend::Rising),
            (-1.99, Trend::Stable),
            (-2.0, Trend::Falling),
        ];
        for (c, want) in cases {
            assert_eq!(trend(Some(c)), want, "{c}");
        }
        assert_eq!(trend(None), Trend::Stable);
    }

    #[test]
    fn volatility_from_how_often_and_how_much() {
        let calm = vec![change(10_000, 10_100); 2]; // 2 changes of 1%
        assert_eq!(insight(&[10_000], None, &calm).unwrap().volatility, 13); // 10 + 2.5
        let wild = vec![change(10_000, 7_000); 12]; // 12 changes of 30%
        assert_eq!(insight(&[10_000], None, &wild).unwrap().volatility, 100);
    }

    #[test]
    fn alert_boundaries() {
        let cases = [
            (119, None),
            (120, Some(ChangeSeverity::Medium)),
            (134, Some(ChangeSeverity::Medium)),
            (135, Some(ChangeSeverity::High)),
            (149, Some(ChangeSeverity::High)),
            (150, Some(ChangeSeverity::Critical)),
            (80, Some(ChangeSeverity::Medium)),
            (50, Some(ChangeSeverity::Critical)),
            (81, None),
        ];
        for (new, want) in cases {
            assert_eq!(change_alert(change(100, new)), want, "100 → {new}");
        }
        assert_eq!(change_alert(change(0, 100)), None);
    }

    #[test]
    fn competitiveness_boundaries() {
        let cases = [
            (105, Competitiveness::Excellent),
            (106, Competitiveness::Good),
            (110, Competitiveness::Good),
            (111, Competitiveness::Fair),
            (115, Competitiveness::Fair),
            (116, Competitiveness::Expensive),
            (50, Competitiveness::Excellent),
        ];
        for (price, want) in cases {
            assert_eq!(competitiveness(price, 100), want, "{price}");
        }
    }
}
