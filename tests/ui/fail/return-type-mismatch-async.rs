use fnmetrics::measured;

#[measured]
async fn count() -> u32 {
    "three"
}

fn main() {
    let _ = count();
}
