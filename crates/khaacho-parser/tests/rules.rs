//! Table tests, one group per parsing rule, against a small fixture catalogue.
#![allow(clippy::unwrap_used)]

use khaacho_parser::{Catalog, FlagKind, Unit, parse, run_jsonl};

const FIXTURE: &str = "\
sku,name,aliases,unit,pack_size,price_npr,category
SUGAR,Sugar,chini|चिनी|sugar,kg,50,95,sugar
RICE,Mansuli Rice,chamal|rice|चामल,kg,30,85,rice
RICE-JEERA,Jeera Masino Rice,jeera masino,kg,25,110,rice
JEERA,Jeera,jeera|जीरा,kg,10,700,spices
MUSURO,Musuro Dal,musuro|musuro dal|dal,kg,30,150,lentils
RAHAR,Rahar Dal,rahar|rahar dal|dal,kg,30,190,lentils
OIL,Mustard Oil 1L,tori tel|tel|तेल,bottle,12,320,oil
OIL-5L,Mustard Oil 5L,,bottle,4,1500,oil
WAIWAI,Wai Wai Noodles,wai wai|वाइवाइ,packet,30,20,noodles
2PM,2PM Noodles,2pm,packet,30,20,noodles
PARLEG,Parle-G,parle g|parle-g,packet,48,10,biscuits
HIDE,Hide & Seek,hide and seek,packet,24,50,biscuits
FROOTI-200,Frooti 200ml,frooti,packet,24,25,drinks
FROOTI-600,Frooti 600ml,,bottle,12,65,drinks
COKE-250,Coca-Cola 250ml,coke,bottle,24,30,drinks
COKE-500,Coca-Cola 500ml,,bottle,24,60,drinks
EGG,Egg,anda|egg|eggs|अण्डा,piece,30,16,eggs
LUX,Lux Soap,lux|sabun,piece,72,55,soap
LIFEBUOY,Lifebuoy Soap,lifebuoy|sabun,piece,72,50,soap
SALT,Salt 1kg,nun|नुन,packet,25,25,salt
";

fn catalog() -> Catalog {
    Catalog::from_csv(FIXTURE.as_bytes()).unwrap()
}

/// Renders the outcome as "SKU qty unit" / "SKU Rs amount" lines plus flag names.
fn render(cat: &Catalog, text: &str) -> (Vec<String>, Vec<&'static str>) {
    let out = parse(cat, text);
    let items = out
        .items
        .iter()
        .map(|i| match (i.amount_npr, i.qty) {
            (Some(a), _) => format!("{} Rs{a}", i.sku),
            (None, Some(q)) => format!("{} {q} {}", i.sku, i.unit.unwrap().as_str()),
            (None, None) => format!("{} null {}", i.sku, i.unit.map_or("-", Unit::as_str)),
        })
        .collect();
    let flags = out.flags.iter().map(|f| f.kind.as_str()).collect();
    for i in &out.items {
        assert!(i.span.0 <= i.span.1 && i.span.1 <= text.len());
        assert!((0.0..=1.0).contains(&i.confidence));
    }
    (items, flags)
}

fn check(cases: &[(&str, &[&str], &[&str])]) {
    let cat = catalog();
    for (text, items, flags) in cases {
        let (got_items, got_flags) = render(&cat, text);
        assert_eq!(got_items, *items, "items for {text:?}");
        assert_eq!(got_flags, *flags, "flags for {text:?}");
    }
}

#[test]
fn quantities_digits_words_fractions() {
    check(&[
        ("chini 5 kg", &["SUGAR 5 kg"], &[]),
        ("chini 2.5 kg", &["SUGAR 2.5 kg"], &[]),
        ("chini 1/2 kg", &["SUGAR 0.5 kg"], &[]),
        ("chini ½ kg", &["SUGAR 0.5 kg"], &[]),
        ("chini 1 1/2 kg", &["SUGAR 1.5 kg"], &[]),
        ("half kg jeera", &["JEERA 0.5 kg"], &[]),
        ("aadha kilo jeera", &["JEERA 0.5 kg"], &[]),
        ("dedh kilo chini", &["SUGAR 1.5 kg"], &[]),
        ("adhai kilo chini", &["SUGAR 2.5 kg"], &[]),
        ("sawa kilo chini", &["SUGAR 1.25 kg"], &[]),
        ("sawa dui kilo chini", &["SUGAR 2.25 kg"], &[]),
        ("saadhe tin kilo chini", &["SUGAR 3.5 kg"], &[]),
        ("paune kilo jeera", &["JEERA 0.75 kg"], &[]),
        ("five kg sugar", &["SUGAR 5 kg"], &[]),
        ("twelve packet wai wai", &["WAIWAI 12 packet"], &[]),
        ("dui bora chini", &["SUGAR 2 sack"], &[]),
        ("das kilo chamal", &["RICE 10 kg"], &[]),
        ("चिनी ५ केजी", &["SUGAR 5 kg"], &[]),
        ("चिनी पाँच केजी", &["SUGAR 5 kg"], &[]),
        ("बीस केजी चामल", &["RICE 20 kg"], &[]),
        ("3️⃣ packet wai wai 🙏", &["WAIWAI 3 packet"], &[]),
        ("Parle-G x 3 ctn", &["PARLEG 3 carton"], &[]),
        ("Parle-G × 3 ctn", &["PARLEG 3 carton"], &[]),
        ("3 ctn Parle-G", &["PARLEG 3 carton"], &[]),
        ("chini 25kg x 2", &["SUGAR 50 kg"], &[]),
        ("dui say packet wai wai", &["WAIWAI 200 packet"], &[]),
    ]);
}

#[test]
fn units_and_synonyms() {
    check(&[
        ("chini 5 kilo", &["SUGAR 5 kg"], &[]),
        ("chini 500 gm", &["SUGAR 500 g"], &[]),
        ("chini 500 ग्राम", &["SUGAR 500 g"], &[]),
        ("tel 2 ltr", &["OIL 2 litre"], &[]),
        ("tel 2 लिटर", &["OIL 2 litre"], &[]),
        ("wai wai 10 poko", &["WAIWAI 10 packet"], &[]),
        ("wai wai 10 प्याकेट", &["WAIWAI 10 packet"], &[]),
        ("anda 30 wota", &["EGG 30 piece"], &[]),
        ("wai wai 10 wota", &["WAIWAI 10 packet"], &[]),
        ("wai wai 10 pcs", &["WAIWAI 10 packet"], &[]),
        ("tel 3 btl", &["OIL 3 bottle"], &[]),
        ("tel 1 peti", &["OIL 1 carton"], &[]),
        ("tel 1 पेटी", &["OIL 1 carton"], &[]),
        ("wai wai 2 case", &["WAIWAI 2 carton"], &[]),
        ("anda 2 tray", &["EGG 2 crate"], &[]),
        ("chini 1 bora", &["SUGAR 1 sack"], &[]),
        ("chini 1 बोरा", &["SUGAR 1 sack"], &[]),
        ("anda 2 darjan", &["EGG 2 dozen"], &[]),
        ("अण्डा २ दर्जन", &["EGG 2 dozen"], &[]),
        ("wai wai 20", &["WAIWAI 20 packet"], &[]),
    ]);
}

#[test]
fn size_selects_variant() {
    check(&[
        ("Frooti 200ml 4", &["FROOTI-200 4 packet"], &[]),
        ("frooti 600ml 6", &["FROOTI-600 6 bottle"], &[]),
        ("frooti 600 ml 1 carton", &["FROOTI-600 1 carton"], &[]),
        ("coke 500ml", &["COKE-500 1 bottle"], &[]),
        ("coke 0.5 litre 12", &["COKE-500 12 bottle"], &[]),
        ("coke 12", &["COKE-250 12 bottle"], &[]),
        ("Frooti 4 200ml", &["FROOTI-200 4 packet"], &[]),
        ("tori tel 5 litre", &["OIL-5L 1 bottle"], &[]),
        ("tori tel 3 litre", &["OIL 3 litre"], &[]),
    ]);
}

#[test]
fn structure_separators_bullets_chitchat() {
    check(&[
        (
            "chini 5 kg, chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg and chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg ra chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "चिनी ५ केजी र चामल १० केजी",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg & chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg / chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg + chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "chini 5 kg chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "5 kg chini 10 kg chamal",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "1. chini 5 kg\n2. chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "1) chini 5 kg\n2) chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "- chini 5 kg\n- chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "• chini 5 kg\n• chamal 10 kg",
            &["SUGAR 5 kg", "RICE 10 kg"],
            &[],
        ),
        (
            "Namaste dai! chini 5 kg pathaidinu. Dhanyabad 🙏",
            &["SUGAR 5 kg"],
            &[],
        ),
        ("please send 5 kg sugar, thanks", &["SUGAR 5 kg"], &[]),
        ("Hide & Seek 2 ctn", &["HIDE 2 carton"], &[]),
        ("2PM 1 carton", &["2PM 1 carton"], &[]),
        ("Parle-G 2 ctn (48 pkt each)", &["PARLEG 2 carton"], &[]),
        (
            "anda 1 tray ra 6 wota",
            &["EGG 1 crate", "EGG 6 piece"],
            &[],
        ),
        ("lux sabun 5", &["LUX 5 piece"], &[]),
        (
            "Add 6 more bottles of coke 500ml",
            &["COKE-500 6 bottle"],
            &[],
        ),
    ]);
}

#[test]
fn repeats_sum_and_corrections_replace() {
    check(&[
        ("chini 5 kg, chini 5 kg", &["SUGAR 10 kg"], &[]),
        ("chini 5 kg\nchini 2 kg", &["SUGAR 7 kg"], &[]),
        (
            "chini 1 bora, chini 5 kg",
            &["SUGAR 1 sack", "SUGAR 5 kg"],
            &[],
        ),
        ("chini 10 no 20", &["SUGAR 20 kg"], &[]),
        ("chini 10 kg no 20 kg", &["SUGAR 20 kg"], &[]),
        ("chini 10, sorry 20", &["SUGAR 20 kg"], &[]),
        ("chini 10 hoina 20", &["SUGAR 20 kg"], &[]),
        ("chini 10 kg, sorry chini 20 kg", &["SUGAR 20 kg"], &[]),
        ("wai wai 1 ctn.\nsorry 2 ctn", &["WAIWAI 2 carton"], &[]),
    ]);
}

#[test]
fn prices_phones_dates_times_are_not_quantities() {
    check(&[
        ("chini 5 kg @ 95", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg @ Rs 95", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg rs. 475", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg NPR 475", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg रु ४७५", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg rate 95/kg", &["SUGAR 5 kg"], &[]),
        ("Rs 500 worth of sugar", &["SUGAR Rs500"], &[]),
        ("500 rupees ko chini", &["SUGAR Rs500"], &[]),
        ("रु ५०० को चिनी", &["SUGAR Rs500"], &[]),
        ("chini 5 kg, call 9841234567", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg, phone 98412-34567", &["SUGAR 5 kg"], &[]),
        ("5 baje samma chini 5 kg", &["SUGAR 5 kg"], &[]),
        ("10:30 ma chini 5 kg", &["SUGAR 5 kg"], &[]),
        ("12/05/2024 chini 5 kg", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg on 2081-08-10", &["SUGAR 5 kg"], &[]),
        ("chini 5 kg 2 din ma", &["SUGAR 5 kg"], &[]),
    ]);
}

#[test]
fn matching_aliases_folding_typos_ambiguity() {
    check(&[
        ("CHEENI 5 kg", &["SUGAR 5 kg"], &[]),
        ("chinni 5 kg", &["SUGAR 5 kg"], &[]),
        ("chni 5 kg", &["SUGAR 5 kg"], &[]),
        ("waiwai 2 ctn", &["WAIWAI 2 carton"], &[]),
        ("vai vai 2 ctn", &["WAIWAI 2 carton"], &[]),
        ("parle 2 ctn", &["PARLEG 2 carton"], &[]),
        ("jeera masino 1 bora", &["RICE-JEERA 1 sack"], &[]),
        ("jeera 1 kg", &["JEERA 1 kg"], &[]),
        ("musuro dal 2 kg", &["MUSURO 2 kg"], &[]),
        ("dal musuro 2 kg", &["MUSURO 2 kg"], &[]),
        ("lux sabun 5", &["LUX 5 piece"], &[]),
        ("dal 2 kg", &[], &["ambiguous_item"]),
        ("sabun 1 dozen", &[], &["ambiguous_item"]),
        ("tomato 5 kg", &[], &["unknown_item"]),
        (
            "avocado 2 kg, chini 1 kg",
            &["SUGAR 1 kg"],
            &["unknown_item"],
        ),
    ]);
}

#[test]
fn quantity_flags_keep_the_line() {
    check(&[
        ("chini 2-3 kg", &["SUGAR null kg"], &["ambiguous_quantity"]),
        (
            "chini 2 to 3 kg",
            &["SUGAR null kg"],
            &["ambiguous_quantity"],
        ),
        ("chini thorai", &["SUGAR null kg"], &["ambiguous_quantity"]),
        (
            "some sugar please",
            &["SUGAR null kg"],
            &["ambiguous_quantity"],
        ),
        (
            "chini pathaidinu",
            &["SUGAR null kg"],
            &["ambiguous_quantity"],
        ),
        ("chini bora", &["SUGAR null sack"], &["ambiguous_quantity"]),
        ("chini 0 kg", &["SUGAR null kg"], &["invalid_quantity"]),
        ("chini -5 kg", &["SUGAR null kg"], &["invalid_quantity"]),
        ("chini 50000 kg", &["SUGAR null kg"], &["absurd_quantity"]),
        (
            "wai wai 5000 carton",
            &["WAIWAI null carton"],
            &["absurd_quantity"],
        ),
        ("wai wai 1000 carton", &["WAIWAI 1000 carton"], &[]),
        ("chini 10000 kg", &["SUGAR 10000 kg"], &[]),
    ]);
}

#[test]
fn no_order_messages_produce_nothing() {
    check(&[
        ("Namaste dai", &[], &[]),
        ("thank you 🙏", &[], &[]),
        ("paisa pathaye", &[], &[]),
        ("payment done", &[], &[]),
        ("esewa ma 5000 pathaye", &[], &[]),
        ("chini kati ho?", &[], &[]),
        ("चिनी कति हो?", &[], &[]),
        ("tel ko rate?", &[], &[]),
        ("", &[], &[]),
        ("🙏🙏🙏", &[], &[]),
    ]);
}

#[test]
fn flags_carry_the_phrase() {
    let cat = catalog();
    let out = parse(&cat, "chini 5 kg, avocado 2 kg");
    assert_eq!(out.flags.len(), 1);
    assert_eq!(out.flags[0].kind, FlagKind::UnknownItem);
    assert_eq!(out.flags[0].text, "avocado");
    let out = parse(&cat, "chini 2-3 kg");
    assert_eq!(out.flags[0].text, "chini 2-3 kg");
    let text = "नमस्ते, चिनी ५ केजी";
    let out = parse(&cat, text);
    let (a, b) = out.items[0].span;
    assert_eq!(&text[a..b], "चिनी ५ केजी");
}

#[test]
fn jsonl_output_shape() {
    let cat = catalog();
    let input = concat!(
        r#"{"id":"a","text":"chini 5 kg, chini 2-3 bora"}"#,
        "\n",
        r#"{"id":7,"text":"Rs 500 worth of sugar"}"#,
        "\n",
        "not json\n",
        r#"{"id":"b"}"#,
        "\n"
    );
    let mut out = Vec::new();
    run_jsonl(&cat, input.as_bytes(), &mut out).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[0],
        serde_json::json!({"id":"a","items":[
            {"sku":"SUGAR","qty":5.0,"unit":"kg"},
            {"sku":"SUGAR","qty":null,"unit":"sack"}],
            "flags":[{"type":"ambiguous_quantity","text":"chini 2-3 bora"}]})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"id":7,"items":[{"sku":"SUGAR","amount_npr":500.0}],"flags":[]})
    );
    assert!(lines[2]["error"].is_string());
    assert_eq!(lines[3]["id"], "b");
    assert!(lines[3]["error"].is_string());
}
