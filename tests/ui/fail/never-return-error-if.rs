use fnmetrics::measured;

fn always(_: &()) -> bool {
    true
}

#[measured(error_if = always)]
fn stop() -> ! {
    panic!("stop")
}

fn main() {
    stop();
}
