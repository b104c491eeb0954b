//! Ad-hoc: parse each argument against eval/catalog.csv (or the CSV named by
//! `KHAACHO_CATALOG`) and print the lines and flags.
fn main() -> std::io::Result<()> {
    let path = std::env::var("KHAACHO_CATALOG")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/eval/catalog.csv").to_string());
    let f = std::fs::File::open(path)?;
    let cat = khaacho_parser::Catalog::from_csv(f).map_err(std::io::Error::other)?;
    for text in std::env::args().skip(1) {
        let o = khaacho_parser::parse(&cat, &text);
        println!(
            "{text}\n  {:?}\n  {:?}",
            o.items
                .iter()
                .map(|i| (
                    i.sku.as_str(),
                    i.qty,
                    i.unit.map(|u| u.as_str()),
                    i.amount_npr
                ))
                .collect::<Vec<_>>(),
            o.flags
                .iter()
                .map(|f| (f.kind.as_str(), f.text.as_str()))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
