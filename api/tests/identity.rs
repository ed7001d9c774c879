#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::test]
async fn argon2_timing_probe() {
    let h = domain::identity::password::PasswordHasher::new(19_456, 2, 1, 1).unwrap();
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let s = h.hash("correct horse battery staple 42").await.unwrap();
        println!("hash {:?}", t.elapsed());
        let t = std::time::Instant::now();
        h.verify("x", Some(&s)).await.unwrap();
        println!("verify {:?}", t.elapsed());
    }
}
