use fnmetrics::measured;

#[measured(name = "first", name = "second")]
fn lookup() {}

fn main() {
    lookup();
}
