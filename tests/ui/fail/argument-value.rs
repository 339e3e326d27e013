use fnmetrics::measured;

#[measured(name = lookup)]
fn lookup() {}

fn main() {
    lookup();
}
