//! Throughput benchmark (no harness): builds a synthetic 10,000-product catalogue, times
//! `Catalog::new`, then parses generated typical order messages on one thread.
//! Run: `cargo bench -p khaacho-parser` (optionally `-- <messages>`).
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use khaacho_parser::{Catalog, CatalogProduct, Unit, parse};

const SYLLABLES: [&str; 10] = ["ka", "ri", "mo", "ta", "su", "ne", "lo", "pa", "gi", "ra"];
const TYPES: [(&str, Unit, bool); 25] = [
    ("noodles", Unit::Packet, false),
    ("biscuit", Unit::Packet, false),
    ("chips", Unit::Packet, false),
    ("juice", Unit::Bottle, true),
    ("soap", Unit::Piece, false),
    ("shampoo", Unit::Bottle, true),
    ("oil", Unit::Bottle, true),
    ("rice", Unit::Kg, false),
    ("dal", Unit::Kg, false),
    ("tea", Unit::Packet, false),
    ("coffee", Unit::Piece, false),
    ("salt", Unit::Packet, false),
    ("sugar", Unit::Kg, false),
    ("flour", Unit::Kg, false),
    ("ghee", Unit::Piece, true),
    ("butter", Unit::Piece, false),
    ("milk", Unit::Packet, true),
    ("ketchup", Unit::Bottle, false),
    ("masala", Unit::Packet, false),
    ("cookies", Unit::Packet, false),
    ("candy", Unit::Packet, false),
    ("soda", Unit::Bottle, true),
    ("water", Unit::Bottle, true),
    ("detergent", Unit::Packet, false),
    ("toothpaste", Unit::Piece, false),
];
const SIZES: [u32; 4] = [100, 250, 500, 1000];

/// Small deterministic generator so runs are comparable (no `rand` dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn brand(i: usize) -> String {
    format!("{}{}", SYLLABLES[i / 10 % 10], SYLLABLES[i % 10])
}

fn size_text(size: u32, liquid: bool) -> String {
    match (size, liquid) {
        (1000, true) => "1L".to_string(),
        (1000, false) => "1kg".to_string(),
        (s, true) => format!("{s}ml"),
        (s, false) => format!("{s}g"),
    }
}

fn synthetic_catalogue() -> Vec<CatalogProduct> {
    let mut out = Vec::with_capacity(10_000);
    for b in 0..100 {
        for (t, (ty, unit, liquid)) in TYPES.iter().enumerate() {
            for (s, &size) in SIZES.iter().enumerate() {
                let brand = brand(b);
                let size = size_text(size, *liquid);
                let mut aliases = vec![
                    format!("{brand} {ty} {size}"),
                    format!("{brand}{ty} {size}"),
                ];
                if s == 0 {
                    aliases.push(format!("{brand} {ty}"));
                }
                out.push(CatalogProduct {
                    sku: format!("SKU-{b:03}-{t:02}-{s}"),
                    name: format!("{brand} {ty} {size}"),
                    aliases,
                    unit: *unit,
                    pack_size: Some(24.0),
                    price_npr: Some(100.0),
                    category: ty.to_string(),
                });
            }
        }
    }
    out
}

fn message(rng: &mut Lcg) -> String {
    let mut parts = Vec::new();
    if rng.next(3) == 0 {
        parts.push(["namaste dai,", "hi,", "please send", "नमस्ते,"][rng.next(4)].to_string());
    }
    let n_items = 1 + rng.next(4);
    for k in 0..n_items {
        let (ty, _, liquid) = TYPES[rng.next(TYPES.len())];
        let mut brand = brand(rng.next(100));
        if rng.next(20) == 0 {
            brand.insert(1, 'h'); // a typo: exercises the fuzzy path
        }
        let size = size_text(SIZES[rng.next(4)], liquid);
        let qty = 1 + rng.next(24);
        let unit = ["ctn", "pkt", "pcs", "kg", "", "bora", "dozen"][rng.next(7)];
        let item = match rng.next(4) {
            0 => format!("{qty} {unit} {brand} {ty} {size}"),
            1 => format!("{brand} {ty} {size} x {qty} {unit}"),
            2 => format!("{brand} {ty} {qty} {unit}"),
            _ => format!("{}. {brand} {ty} {size} {qty}", k + 1),
        };
        parts.push(item);
        if k + 1 < n_items {
            parts.push([",", "ra", "and", "\n", "&"][rng.next(5)].to_string());
        }
    }
    if rng.next(4) == 0 {
        parts.push("dhanyabad 🙏".to_string());
    }
    parts.join(" ")
}

fn main() {
    let n_messages: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let products = synthetic_catalogue();
    let t = Instant::now();
    let catalog = Catalog::new(products);
    let build = t.elapsed();
    println!(
        "catalogue build: {} products in {:.1} ms",
        catalog.products().len(),
        build.as_secs_f64() * 1e3
    );

    let mut rng = Lcg(42);
    let messages: Vec<String> = (0..n_messages).map(|_| message(&mut rng)).collect();
    let bytes: usize = messages.iter().map(String::len).sum();
    // Warm-up, then the timed run.
    for m in messages.iter().take(1_000) {
        black_box(parse(&catalog, m));
    }
    let t = Instant::now();
    let mut lines = 0usize;
    let mut flags = 0usize;
    for m in &messages {
        let out = black_box(parse(&catalog, black_box(m)));
        lines += out.items.len();
        flags += out.flags.len();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "parsed {n_messages} messages ({:.1} MB) in {:.3} s: {:.0} messages/s, {:.2} µs/message",
        bytes as f64 / 1e6,
        secs,
        n_messages as f64 / secs,
        secs * 1e6 / n_messages as f64
    );
    println!(
        "lines {lines} ({:.2}/message), flags {flags} ({:.3}/message)",
        lines as f64 / n_messages as f64,
        flags as f64 / n_messages as f64
    );
    println!(
        "sample: {:?}\n  -> {:?}",
        messages[0],
        parse(&catalog, &messages[0]).items
    );
}
