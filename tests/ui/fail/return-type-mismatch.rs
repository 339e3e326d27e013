use fnmetrics::measured;

#[measured]
fn count() -> u32 {
    "three"
}

fn main() {
    count();
}
