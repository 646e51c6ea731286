faust::main!(partitions = 4);
