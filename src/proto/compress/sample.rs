//! JSON-like events of 1 KiB, as a service's webhooks would send, and the
//! part layouts a framed batch can have: what the compressor's tests and
//! `benches/compress.rs` (which includes this file) compress.

use std::fmt::Write;

/// Length of each JSON-like message.
pub(crate) const MESSAGE_LEN: usize = 1024;

/// `n` webhook-style JSON events of [`MESSAGE_LEN`] bytes each, from
/// `seed`: fixed keys, varying ids, names, amounts and free text, as a
/// service's notifications would be.
pub(crate) fn json_like_batch(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n).map(|i| json_like(&mut rng, i as u64)).collect()
}

fn json_like(rng: &mut fastrand::Rng, i: u64) -> Vec<u8> {
    const TYPES: [&str; 6] = [
        "order.created",
        "order.updated",
        "order.paid",
        "order.shipped",
        "order.refunded",
        "customer.updated",
    ];
    const STATUS: [&str; 5] = ["pending", "paid", "shipped", "delivered", "refunded"];
    const FIRST: [&str; 10] = [
        "Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
        "Radia",
    ];
    const LAST: [&str; 10] = [
        "Lovelace", "Hopper", "Torvalds", "Hamilton", "Thompson", "Liskov", "Ritchie", "Allen",
        "Dijkstra", "Perlman",
    ];
    const CITY: [(&str, &str); 6] = [
        ("Paris", "FR"),
        ("Berlin", "DE"),
        ("Lisbon", "PT"),
        ("Oslo", "NO"),
        ("Austin", "US"),
        ("Osaka", "JP"),
    ];
    const PRODUCT: [&str; 8] = [
        "USB-C cable 2m",
        "Mechanical keyboard",
        "27in monitor",
        "Laptop stand",
        "Noise-cancelling headphones",
        "Webcam 1080p",
        "Desk lamp",
        "Wireless mouse",
    ];
    const WORDS: [&str; 24] = [
        "please",
        "leave",
        "the",
        "parcel",
        "at",
        "door",
        "front",
        "reception",
        "call",
        "before",
        "delivery",
        "gift",
        "wrap",
        "no",
        "invoice",
        "in",
        "box",
        "second",
        "floor",
        "ring",
        "twice",
        "weekday",
        "after",
        "six",
    ];
    let hex = |rng: &mut fastrand::Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[rng.usize(..16)]))
            .collect()
    };
    let (first, last) = (FIRST[rng.usize(..10)], LAST[rng.usize(..10)]);
    let (city, country) = CITY[rng.usize(..CITY.len())];
    let mut s = String::with_capacity(MESSAGE_LEN);
    let _ = write!(
        s,
        "{{\"id\":\"evt_{}\",\"type\":\"{}\",\"created\":{},\"api_version\":\"2024-06-20\",\
         \"livemode\":true,\"data\":{{\"object\":{{\"id\":\"ord_{}\",\"status\":\"{}\",\
         \"currency\":\"eur\",\"amount_total\":{},\"customer\":{{\"id\":\"cus_{}\",\
         \"email\":\"{}.{}{}@example.com\",\"name\":\"{} {}\",\"phone\":\"+33{:09}\",\
         \"address\":{{\"line1\":\"{} Rue {}\",\"city\":\"{}\",\"postal_code\":\"{:05}\",\
         \"country\":\"{}\"}}}},\"items\":[",
        hex(rng, 24),
        TYPES[rng.usize(..TYPES.len())],
        1_732_000_000 + i * 7 + rng.u64(..7),
        hex(rng, 16),
        STATUS[rng.usize(..STATUS.len())],
        rng.u32(100..500_000),
        hex(rng, 14),
        first.to_lowercase(),
        last.to_lowercase(),
        rng.u32(..1000),
        first,
        last,
        rng.u32(..1_000_000_000),
        rng.u32(1..200),
        LAST[rng.usize(..10)],
        city,
        rng.u32(..100_000),
        country,
    );
    for k in 0..rng.usize(1..=3) {
        if k > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"sku\":\"SKU-{:06}\",\"name\":\"{}\",\"quantity\":{},\"unit_amount\":{},\
             \"tax_rate\":\"txr_{}\"}}",
            rng.u32(..1_000_000),
            PRODUCT[rng.usize(..PRODUCT.len())],
            rng.u32(1..5),
            rng.u32(100..100_000),
            hex(rng, 12),
        );
    }
    let _ = write!(
        s,
        "],\"metadata\":{{\"channel\":\"web\",\"trace_id\":\"{}\",\"request_id\":\"req_{}\"}},\
         \"note\":\"",
        hex(rng, 32),
        hex(rng, 16),
    );
    // Free text up to the length, then the closing.
    let tail = "\"}}}";
    assert!(
        s.len() + tail.len() < MESSAGE_LEN,
        "{} bytes before the note",
        s.len()
    );
    while s.len() + tail.len() < MESSAGE_LEN {
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
        s.push(' ');
    }
    s.truncate(MESSAGE_LEN - tail.len());
    s.push_str(tail);
    debug_assert_eq!(s.len(), MESSAGE_LEN);
    s.into_bytes()
}

/// `messages` framed as NDJSON: each message then `\n`, as parts.
pub(crate) fn ndjson(messages: &[Vec<u8>]) -> Vec<Vec<u8>> {
    messages
        .iter()
        .flat_map(|m| [m.clone(), b"\n".to_vec()])
        .collect()
}

/// Bodies split into parts in the ways a framed batch can be.
pub(crate) fn layouts() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let batch = json_like_batch(500, 42);
    let mut json_array = vec![b"[".to_vec()];
    for (i, m) in batch.iter().enumerate() {
        if i > 0 {
            json_array.push(b",".to_vec());
        }
        json_array.push(m.clone());
    }
    json_array.push(b"]".to_vec());
    let mut rng = fastrand::Rng::with_seed(9);
    let mib: Vec<u8> = (0..1 << 20)
        .map(|i| {
            if i % 3 == 0 {
                rng.u8(..)
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let with_empties: Vec<Vec<u8>> = ndjson(&batch[..20])
        .into_iter()
        .flat_map(|p| [Vec::new(), p, Vec::new()])
        .collect();
    vec![
        ("empty body, no parts", vec![]),
        ("empty body, empty parts", vec![Vec::new(), Vec::new()]),
        ("one byte", vec![b"x".to_vec()]),
        ("one part", vec![batch[0].clone()]),
        ("one message as NDJSON", ndjson(&batch[..1])),
        ("500 messages as NDJSON", ndjson(&batch)),
        ("500 messages as a JSON array", json_array),
        ("empty parts between", with_empties),
        ("1 MiB part", vec![mib.clone()]),
        (
            "1 MiB part among small ones",
            vec![b"{".to_vec(), mib, b"}".to_vec()],
        ),
        (
            "one byte a part",
            batch[0].iter().map(|&b| vec![b]).collect(),
        ),
    ]
}
