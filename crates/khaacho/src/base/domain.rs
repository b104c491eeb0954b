//! Domain values shared by the features: units, quantities in milli-units, money in paisa.

pub use khaacho_parser::Unit;

/// Why a quantity cannot be expressed in a product's base unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// The units measure different things (litres of rice).
    #[error("unit is not compatible with the product's unit")]
    Incompatible,
    /// An outer pack was ordered but the product has no pack size.
    #[error("the product is not sold in outer packs")]
    NoPackSize,
    /// The result is a fraction of a counted unit.
    #[error("quantity must be a whole number of a counted unit")]
    Fractional,
}

/// Parses a canonical unit name exactly (`kg`, `carton`…). Synonyms ("kilo", "peti") are
/// the text parser's business; the JSON API takes canonical names only.
pub fn canonical_unit(s: &str) -> Option<Unit> {
    Unit::ALL.into_iter().find(|u| u.as_str() == s)
}

/// The order rules of units, on top of the parser's unit vocabulary.
pub trait UnitRules: Sized {
    /// Whether products may use this as their base unit.
    fn is_base(&self) -> bool;
    /// Whether the unit counts whole things, so a fraction of it is meaningless.
    fn is_count(&self) -> bool;
    /// Converts `qty_milli` of `self` into milli-units of `base`, given the product's pack
    /// size (base milli-units per outer pack).
    fn to_base(
        self,
        qty_milli: i64,
        base: Unit,
        pack_size_milli: Option<i64>,
    ) -> Result<i64, ConversionError>;
}

impl UnitRules for Unit {
    fn is_base(&self) -> bool {
        matches!(
            self,
            Unit::Kg | Unit::Litre | Unit::Packet | Unit::Piece | Unit::Bottle
        )
    }

    fn is_count(&self) -> bool {
        matches!(
            self,
            Unit::Packet | Unit::Piece | Unit::Bottle | Unit::Carton | Unit::Crate
        )
    }

    fn to_base(
        self,
        qty_milli: i64,
        base: Unit,
        pack_size_milli: Option<i64>,
    ) -> Result<i64, ConversionError> {
        let converted = match (self, base) {
            (a, b) if a == b => qty_milli,
            // Milli-units of a gram are micro-kilograms: round to the nearest milli-kg.
            (Unit::G, Unit::Kg) | (Unit::Ml, Unit::Litre) => (qty_milli + 500) / 1000,
            (Unit::Carton | Unit::Crate | Unit::Sack, _) => {
                let pack = pack_size_milli.ok_or(ConversionError::NoPackSize)?;
                ((qty_milli as i128 * pack as i128) / 1000) as i64
            }
            (Unit::Dozen, b) if b.is_count() => qty_milli * 12,
            _ => return Err(ConversionError::Incompatible),
        };
        if base.is_count() && converted % 1000 != 0 {
            return Err(ConversionError::Fractional);
        }
        Ok(converted)
    }
}

/// Converts a decimal quantity to milli-units, refusing more than three decimals.
pub fn qty_to_milli(qty: f64) -> Option<i64> {
    if !qty.is_finite() || qty.abs() > 1e12 {
        return None;
    }
    let milli = (qty * 1000.0).round();
    if (milli / 1000.0 - qty).abs() > 1e-9 {
        return None;
    }
    Some(milli as i64)
}

/// Milli-units back to a decimal for JSON.
pub fn milli_to_qty(milli: i64) -> f64 {
    milli as f64 / 1000.0
}

/// Paisa to rupees for JSON (NPR with two decimals).
pub fn paisa_to_npr(paisa: i64) -> f64 {
    paisa as f64 / 100.0
}

/// Rupees (as written in a CSV or JSON) to paisa, refusing more than two decimals.
pub fn npr_to_paisa(npr: f64) -> Option<i64> {
    if !npr.is_finite() || npr.abs() > 1e13 {
        return None;
    }
    let paisa = (npr * 100.0).round();
    if (paisa / 100.0 - npr).abs() > 1e-7 {
        return None;
    }
    Some(paisa as i64)
}

/// VAT percentage added per line (Nepal: 13%).
pub const VAT_PERCENT: i64 = 13;

/// `price_paisa` per base unit times `qty_milli` base milli-units, rounded half up to paisa.
pub fn line_amount(price_paisa: i64, qty_milli: i64) -> i64 {
    ((price_paisa as i128 * qty_milli as i128 + 500) / 1000) as i64
}

/// VAT at `percent` of `amount_paisa`, rounded half up.
pub fn vat(amount_paisa: i64, percent: i64) -> i64 {
    ((amount_paisa as i128 * percent as i128 + 50) / 100) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_units_to_base() {
        assert_eq!(Unit::Kg.to_base(2500, Unit::Kg, None), Ok(2500));
        assert_eq!(Unit::G.to_base(500_000, Unit::Kg, None), Ok(500));
        assert_eq!(
            Unit::Carton.to_base(3000, Unit::Packet, Some(30_000)),
            Ok(90_000)
        );
        assert_eq!(Unit::Sack.to_base(2000, Unit::Kg, Some(25_000)), Ok(50_000));
        assert_eq!(Unit::Dozen.to_base(2000, Unit::Piece, None), Ok(24_000));
        assert_eq!(
            Unit::Litre.to_base(1000, Unit::Kg, None),
            Err(ConversionError::Incompatible)
        );
        assert_eq!(
            Unit::Carton.to_base(1000, Unit::Packet, None),
            Err(ConversionError::NoPackSize)
        );
        assert_eq!(
            Unit::Packet.to_base(1500, Unit::Packet, None),
            Err(ConversionError::Fractional)
        );
    }

    #[test]
    fn money_rounds_half_up() {
        assert_eq!(line_amount(15_050, 2500), 37_625);
        assert_eq!(line_amount(333, 1500), 500); // 499.5 -> 500
        assert_eq!(vat(10_000, 13), 1_300);
        assert_eq!(vat(15, 13), 2); // 1.95 -> 2
        assert_eq!(npr_to_paisa(158.5), Some(15_850));
        assert_eq!(npr_to_paisa(1.005), None);
        assert_eq!(qty_to_milli(2.5), Some(2500));
        assert_eq!(qty_to_milli(0.0001), None);
    }
}
