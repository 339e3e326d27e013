use fnmetrics::measured;

#[measured]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer();
}
