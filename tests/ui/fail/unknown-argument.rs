use fnmetrics::measured;

#[measured(name = "lookup", level = "debug")]
fn lookup() {}

fn main() {
    lookup();
}
