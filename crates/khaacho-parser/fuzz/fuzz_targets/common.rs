//! The fuzzing catalogue, shared by both targets: ~20 products with English, romanized and
//! Devanagari aliases, size variants, counted and weighed units and pack sizes.

use std::sync::LazyLock;

use khaacho_parser::{Catalog, CatalogProduct, Unit};

fn p(
    sku: &str,
    name: &str,
    aliases: &[&str],
    unit: Unit,
    pack_size: Option<f64>,
    price_npr: Option<f64>,
    category: &str,
) -> CatalogProduct {
    CatalogProduct {
        sku: sku.into(),
        name: name.into(),
        aliases: aliases.iter().map(|a| (*a).to_string()).collect(),
        unit,
        pack_size,
        price_npr,
        category: category.into(),
    }
}

pub static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    use Unit::*;
    Catalog::new(vec![
        p("SUGAR", "Sugar", &["sugar", "chini", "cheeni", "चिनी", "चीनी", "suger"], Kg, Some(50.0), Some(95.0), "sugar"),
        p("RICE-MANSULI", "Sona Mansuli Rice", &["mansuli", "chamal", "rice", "मन्सुली", "चामल"], Kg, Some(30.0), Some(85.0), "rice"),
        p("RICE-JEERA", "Jeera Masino Rice", &["jeera masino", "jira masino", "masino", "जीरा मसिनो"], Kg, Some(25.0), Some(110.0), "rice"),
        p("JEERA", "Jeera", &["jeera", "cumin", "जीरा"], Kg, Some(10.0), Some(700.0), "spices"),
        p("MAIDA", "Maida", &["maida", "refined flour", "मैदा", "meda"], Kg, Some(50.0), Some(70.0), "flour"),
        p("DAL-MUSURO", "Musuro Dal", &["musuro", "musuro dal", "masoor", "dal", "मुसुरो", "दाल"], Kg, Some(30.0), Some(150.0), "lentils"),
        p("DAL-RAHAR", "Rahar Dal", &["rahar", "rahar dal", "toor dal", "dal", "राहर", "दाल"], Kg, Some(30.0), Some(190.0), "lentils"),
        p("OIL-MUSTARD-1L", "Mustard Oil 1L", &["mustard oil", "tori tel", "tel", "तेल", "तोरी तेल"], Bottle, Some(12.0), Some(320.0), "oil"),
        p("OIL-MUSTARD-500ML", "Mustard Oil 500ml", &[], Bottle, Some(24.0), Some(170.0), "oil"),
        p("SALT-1KG", "Iodised Salt 1kg", &["nun", "noon", "salt", "नुन"], Packet, Some(25.0), Some(25.0), "salt"),
        p("NOODLE-WAIWAI", "Wai Wai Noodles", &["wai wai", "waiwai", "वाइवाइ", "chauchau", "चाउचाउ"], Packet, Some(30.0), Some(20.0), "noodles"),
        p("NOODLE-RARA", "Rara Noodles", &["rara", "रारा", "chauchau", "चाउचाउ"], Packet, Some(30.0), Some(20.0), "noodles"),
        p("NOODLE-2PM", "2PM Noodles", &["2pm", "2 pm noodles", "two pm"], Packet, Some(30.0), Some(20.0), "noodles"),
        p("BISC-PARLEG", "Parle-G Biscuit", &["parle g", "parle-g", "parle", "पार्ले जी", "biscuit", "बिस्कुट"], Packet, Some(48.0), Some(10.0), "biscuits"),
        p("BISC-HIDESEEK", "Hide & Seek Biscuit", &["hide and seek", "hide & seek", "hide n seek"], Packet, Some(24.0), None, "biscuits"),
        p("FROOTI-200ML", "Frooti 200ml", &["frooti", "fruity", "फ्रुटी"], Packet, Some(24.0), Some(25.0), "drinks"),
        p("FROOTI-600ML", "Frooti 600ml", &[], Bottle, Some(12.0), Some(65.0), "drinks"),
        p("COKE-250ML", "Coca-Cola 250ml", &["coke", "coca cola", "कोक"], Bottle, Some(24.0), Some(30.0), "drinks"),
        p("COKE-500ML", "Coca-Cola 500ml", &[], Bottle, Some(24.0), Some(60.0), "drinks"),
        p("COKE-1.5L", "Coca-Cola 1.5L", &[], Bottle, Some(12.0), Some(150.0), "drinks"),
        p("EGG", "Egg", &["egg", "eggs", "anda", "अण्डा", "ande"], Piece, Some(30.0), Some(16.0), "eggs"),
        p("SOAP-LUX", "Lux Soap", &["lux", "sabun", "साबुन"], Piece, Some(72.0), Some(55.0), "soap"),
        p("SOAP-LIFEBUOY", "Lifebuoy Soap", &["lifebuoy", "sabun"], Piece, Some(72.0), None, "soap"),
        p("MILK-500ML", "DDC Milk 500ml", &["milk", "dudh", "दुध", "दूध"], Packet, Some(20.0), Some(45.0), "dairy"),
        p("CHIURA", "Chiura", &["chiura", "beaten rice", "चिउरा"], Kg, None, None, "rice"),
    ])
});
