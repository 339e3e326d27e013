use fnmetrics::measured;

fn store(_: &str) {}

#[measured]
async fn save(id: u32) {
    store(id);
}

#[measured]
async fn total(items: Vec<u32>) {
    items.len()
}

fn main() {
    let _ = save(1);
    let _ = total(vec![]);
}
