use fnmetrics::measured;

#[measured(name = 42)]
fn lookup() {}

fn main() {
    lookup();
}
