use fnmetrics::measured;

#[measured]
struct Config;

fn main() {
    let _ = Config;
}
