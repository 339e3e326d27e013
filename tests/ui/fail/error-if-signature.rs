use fnmetrics::measured;

fn is_big(value: &u64) -> bool {
    *value > 10
}

#[measured(error_if = is_big)]
fn small() -> u8 {
    1
}

fn main() {
    small();
}
