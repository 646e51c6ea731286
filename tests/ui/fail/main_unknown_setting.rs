faust::main!(id = "app", partitons = 4);
