use fnmetrics::measured;

#[measured(name = "")]
fn lookup() {}

fn main() {
    lookup();
}
