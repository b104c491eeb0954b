//! Catalogue CSV: `sku,name,aliases,unit,pack_size,price_npr,category`, aliases `|`-separated.

use std::io::{Read, Write};

use super::repo::{ProductInput, ProductRow};
use crate::base::domain::{
    Unit, UnitRules, canonical_unit, milli_to_qty, npr_to_paisa, paisa_to_npr, qty_to_milli,
};
use crate::base::wire::controls;
use crate::base::wire::error::FieldError;

/// The header every catalogue CSV carries.
pub const HEADER: [&str; 7] = [
    "sku",
    "name",
    "aliases",
    "unit",
    "pack_size",
    "price_npr",
    "category",
];

/// Reads a whole catalogue; every problem is reported with its row (1 = header) and column.
pub fn read_catalog(input: impl Read) -> Result<Vec<ProductInput>, Vec<FieldError>> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let mut errors = Vec::new();
    match rdr.headers() {
        Ok(h)
            if h.iter()
                .map(str::to_ascii_lowercase)
                .eq(HEADER.iter().map(|s| s.to_string())) => {}
        Ok(h) => {
            return Err(vec![FieldError::new(
                "row 1",
                format!(
                    "header must be `{}` (got `{}`)",
                    HEADER.join(","),
                    h.iter().collect::<Vec<_>>().join(",")
                ),
            )]);
        }
        Err(e) => {
            return Err(vec![FieldError::new(
                "row 1",
                format!("unreadable CSV: {e}"),
            )]);
        }
    }
    let mut products: Vec<ProductInput> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(FieldError::new(
                    format!("row {row}"),
                    format!("unreadable CSV: {e}"),
                ));
                continue;
            }
        };
        if rec.len() != HEADER.len() {
            errors.push(FieldError::new(
                format!("row {row}"),
                format!("expected 7 columns, found {}", rec.len()),
            ));
            continue;
        }
        match parse_row(&rec, row) {
            Ok(p) => {
                if !seen.insert(p.sku.clone()) {
                    errors.push(FieldError::new(
                        format!("row {row}.sku"),
                        format!("duplicate SKU {}", p.sku),
                    ));
                }
                products.push(p);
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    if products.is_empty() && errors.is_empty() {
        errors.push(FieldError::new("row 2", "the catalogue has no products"));
    }
    if errors.is_empty() {
        Ok(products)
    } else {
        Err(errors)
    }
}

fn parse_row(rec: &csv::StringRecord, row: usize) -> Result<ProductInput, Vec<FieldError>> {
    let field = |name: &str| format!("row {row}.{name}");
    // No catalogue column is free text, so no control character belongs in any cell (the
    // rule is in `base::wire::controls`); such a row is refused before its cells are read.
    let controls: Vec<FieldError> = HEADER
        .iter()
        .zip(rec.iter())
        .filter_map(|(name, cell)| {
            let c = controls::forbidden_in_value(cell)?;
            Some(FieldError::new(field(name), controls::value_message(c)))
        })
        .collect();
    if !controls.is_empty() {
        return Err(controls);
    }
    let mut errors = Vec::new();
    let sku = rec[0].to_string();
    if let Err(msg) = validate_sku(&sku) {
        errors.push(FieldError::new(field("sku"), msg));
    }
    let name = rec[1].to_string();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new(
            field("name"),
            "name must be 1 to 200 characters",
        ));
    }
    let aliases: Vec<String> = rec[2]
        .split('|')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let unit = match canonical_unit(&rec[3].to_ascii_lowercase()) {
        Some(u) if u.is_base() => u,
        _ => {
            errors.push(FieldError::new(
                field("unit"),
                "unit must be one of kg, litre, packet, piece, bottle",
            ));
            Unit::Piece
        }
    };
    let pack_size_milli = match rec[4].as_ref() {
        "" => None,
        s => match s
            .parse::<f64>()
            .ok()
            .and_then(qty_to_milli)
            .filter(|m| *m > 0)
        {
            Some(m) if !unit.is_count() || m % 1000 == 0 => Some(m),
            _ => {
                errors.push(FieldError::new(
                    field("pack_size"),
                    "pack_size must be a positive number (whole for counted units)",
                ));
                None
            }
        },
    };
    let list_price_paisa = match rec[5].as_ref() {
        "" => None,
        s => match s
            .parse::<f64>()
            .ok()
            .and_then(npr_to_paisa)
            .filter(|p| *p > 0)
        {
            Some(p) => Some(p),
            None => {
                errors.push(FieldError::new(
                    field("price_npr"),
                    "price_npr must be a positive amount with at most 2 decimals",
                ));
                None
            }
        },
    };
    let category = rec[6].to_string();
    if category.is_empty() {
        errors.push(FieldError::new(field("category"), "category is required"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ProductInput {
        sku,
        name,
        aliases,
        unit: unit.as_str().to_string(),
        pack_size_milli,
        list_price_paisa,
        category,
    })
}

/// SKUs are 1–64 characters of `A-Z a-z 0-9 - _ .`.
pub fn validate_sku(sku: &str) -> Result<(), &'static str> {
    if sku.is_empty() || sku.len() > 64 {
        return Err("sku must be 1 to 64 characters");
    }
    if !sku
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("sku may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

/// Writes products in the catalogue CSV format.
pub fn write_catalog(products: &[ProductRow], out: impl Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    for p in products {
        w.write_record([
            p.sku.as_str(),
            p.name.as_str(),
            p.aliases.0.join("|").as_str(),
            p.unit.as_str(),
            p.pack_size_milli
                .map(|m| milli_to_qty(m).to_string())
                .unwrap_or_default()
                .as_str(),
            p.list_price_paisa
                .map(|c| format!("{:.2}", paisa_to_npr(c)))
                .unwrap_or_default()
                .as_str(),
            p.category.as_str(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_valid_rows_and_reports_bad_ones() {
        let ok = "sku,name,aliases,unit,pack_size,price_npr,category\nWAI-75,Wai Wai,wai wai|वाइवाइ,packet,30,20,noodles\n";
        let p = read_catalog(ok.as_bytes()).unwrap();
        assert_eq!(p[0].aliases, vec!["wai wai", "वाइवाइ"]);
        assert_eq!(p[0].pack_size_milli, Some(30_000));
        assert_eq!(p[0].list_price_paisa, Some(2_000));
        let bad = "sku,name,aliases,unit,pack_size,price_npr,category\nA B,,x,ton,-1,abc,\n";
        let errs = read_catalog(bad.as_bytes()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "row 2.sku",
                "row 2.name",
                "row 2.unit",
                "row 2.pack_size",
                "row 2.price_npr",
                "row 2.category"
            ]
        );
        assert!(read_catalog("a,b\n".as_bytes()).is_err());
    }

    #[test]
    fn control_characters_in_cells_are_named() {
        let csv = "sku,name,aliases,unit,pack_size,price_npr,category\n\
                   WAI-75,Wai\u{0}Wai,wai|x\u{1b},packet,30,20,noodles\n\
                   OK-1,Fine,,kg,,,grain\n";
        let errs = read_catalog(csv.as_bytes()).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["row 2.name", "row 2.aliases"]);
        assert!(errs[0].message.contains("U+0000"));
    }
}
