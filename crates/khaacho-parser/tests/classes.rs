//! One made-up message per failure class of the robustness issue, on the blind catalogue
//! (`eval/blind/catalog2.csv`). None of these texts is taken from an evaluation batch.
#![allow(clippy::unwrap_used)]

use khaacho_parser::{Catalog, parse};

fn catalog() -> Catalog {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/blind/catalog2.csv");
    Catalog::from_csv(std::fs::File::open(path).unwrap()).unwrap()
}

fn check(cat: &Catalog, text: &str, items: &[&str], flags: &[&str]) {
    let out = parse(cat, text);
    let got: Vec<String> = out
        .items
        .iter()
        .map(|i| {
            let q = i.qty.map_or("null".to_string(), |q| q.to_string());
            format!("{} {q} {}", i.sku, i.unit.map_or("-", |u| u.as_str()))
        })
        .collect();
    assert_eq!(got, items, "items for {text:?}");
    let got: Vec<&str> = out.flags.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(got, flags, "flags for {text:?}");
}

#[test]
fn size_and_count_in_every_order() {
    let cat = catalog();
    check(
        &cat,
        "Sprite 1.5 litre 3 bottle",
        &["SPRITE-1500 3 bottle"],
        &[],
    );
    check(
        &cat,
        "sprite 500ml ko 8 wota",
        &["SPRITE-500 8 bottle"],
        &[],
    );
    check(&cat, "2 jar Nescafe 100g", &["NESCAFE-100 2 piece"], &[]);
    check(
        &cat,
        "स्प्राइट १ लिटरको ४ वटा",
        &["SPRITE-1000 4 bottle"],
        &[],
    );
    check(&cat, "dhara 5 L wala 2 ota", &["DHARA-5L 2 piece"], &[]);
    check(&cat, "fortune atta 5 kg", &["FORTATTA-5 1 packet"], &[]);
    check(&cat, "sprite 1.5 - 2 peti", &["SPRITE-1500 2 carton"], &[]);
    check(
        &cat,
        "Ilam chiya 100g ko 5 packet, 250g ko 2 ota",
        &["ILAM-100 5 packet", "ILAM-250 2 packet"],
        &[],
    );
}

#[test]
fn containers_count_the_product() {
    let cat = catalog();
    check(&cat, "Gyan atta 10kg 3 bag", &["GYAN-10 3 packet"], &[]);
    check(&cat, "sugar 2 bag", &["SUGAR 2 sack"], &[]);
    check(&cat, "horlicks 3 jar", &["HORLICKS-500 3 piece"], &[]);
    check(&cat, "horlicks 2 case", &["HORLICKS-500 2 carton"], &[]);
}

#[test]
fn names_with_digits_and_times() {
    let cat = catalog();
    check(&cat, "5 Star 40g 10 pcs", &["5STAR-40 10 piece"], &[]);
    check(
        &cat,
        "3 in 1 coffee 20 ota",
        &["NESCAFE-3IN1 20 piece"],
        &[],
    );
    check(&cat, "2 carton 50-50", &["BIS-5050 2 carton"], &[]);
    check(&cat, "chini 5 kg before 4pm", &["SUGAR 5 kg"], &[]);
}

#[test]
fn everyday_words_and_chit_chat() {
    let cat = catalog();
    check(&cat, "Good day sir, hope all is well", &[], &[]);
    check(
        &cat,
        "Tokla 250g pani 4 packet",
        &["TOKLA-250 4 packet"],
        &[],
    );
    check(&cat, "bholi 3 baje 4 jana aaunuhuncha", &[], &[]);
    check(
        &cat,
        "order cancel garnu, 2 carton sprite dherai bhayo",
        &[],
        &[],
    );
    check(&cat, "Laxmi Traders, chini 10 kg", &["SUGAR 10 kg"], &[]);
}

#[test]
fn generic_words_and_unstocked_brands() {
    let cat = catalog();
    check(&cat, "noodles 2 carton", &[], &["ambiguous_item"]);
    check(&cat, "Mayos noodles 2 carton", &[], &["unknown_item"]);
    check(
        &cat,
        "Everest pav bhaji masala 4 packet",
        &[],
        &["unknown_item"],
    );
}

#[test]
fn messy_typing() {
    let cat = catalog();
    check(&cat, "BESAN-5KG", &["BESAN 5 kg"], &[]);
    check(&cat, "suji 2ctn", &["SUJI 2 carton"], &[]);
    check(&cat, "MARIE GOLD CTN 3", &["BIS-MARIE-GOLD 3 carton"], &[]);
    check(
        &cat,
        "sugar 10kg + maida 5kg",
        &["SUGAR 10 kg", "MAIDA 5 kg"],
        &[],
    );
    check(
        &cat,
        "Lux 12 pcs (nabhaye Santoor 12 pcs)",
        &["LUX-100 12 piece"],
        &[],
    );
    check(&cat, "chiura 1 bora (30 kg)", &["CHIURA 1 sack"], &[]);
    check(
        &cat,
        "Ruchi chicken 3, veg 2",
        &["NDL-RUCHI-CHK 3 packet", "NDL-RUCHI-VEG 2 packet"],
        &[],
    );
    check(
        &cat,
        "sunsilk pouch 5, bottle 2",
        &["SUNSILK-SACHET 5 packet", "SUNSILK-180 2 bottle"],
        &[],
    );
}
