//! Helper of `scripts/bench-kafka`: loads tickets into a topic, and reads a topic with a bare
//! rdkafka consumer (the same librdkafka build as `triage run`) to measure rates.
//!
//!   kafka_bench load BOOTSTRAP TOPIC COUNT TICKETS.jsonl
//!       produce COUNT tickets, cycling the lines of TICKETS.jsonl with fresh ids
//!   kafka_bench read BOOTSTRAP TOPIC COUNT
//!       read COUNT records from the beginning of TOPIC (no group, nothing else done with
//!       them) and print `records=N first_to_last_s=S rate=R wall_s=W`, where the rate is
//!       measured from the first record to the last and the wall time from the start

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["load", bootstrap, topic, count, file] => {
            load(bootstrap, topic, count.parse().expect("COUNT"), file)
        }
        ["read", bootstrap, topic, count] => read(bootstrap, topic, count.parse().expect("COUNT")),
        _ => {
            eprintln!("usage: kafka_bench load BOOTSTRAP TOPIC COUNT TICKETS.jsonl | read BOOTSTRAP TOPIC COUNT");
            std::process::exit(2);
        }
    }
}

fn load(bootstrap: &str, topic: &str, count: usize, file: &str) {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(file)
        .expect("read tickets")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("ticket JSON"))
        .collect();
    assert!(!lines.is_empty(), "{file} has no tickets");
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let t0 = Instant::now();
    for i in 0..count {
        let mut v = lines[i % lines.len()].clone();
        let id = format!("B{i:08}");
        v["id"] = serde_json::Value::String(id.clone());
        if let Some(o) = v.as_object_mut() {
            o.remove("labels");
        }
        let payload = serde_json::to_vec(&v).unwrap();
        let mut record = BaseRecord::to(topic).key(id.as_bytes()).payload(&payload);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
    eprintln!(
        "loaded {count} tickets into {topic} in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

fn read(bootstrap: &str, topic: &str, count: usize) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("bench-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).expect("assign");
    let start = Instant::now();
    let mut first = None;
    let mut n = 0usize;
    let mut bytes = 0usize;
    let deadline = start + Duration::from_secs(600);
    while n < count {
        assert!(
            Instant::now() < deadline,
            "only {n} of {count} records after 600 s"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, <[u8]>::len);
                n += 1;
            }
            Some(Err(e)) => eprintln!("read: {e}"),
            None => {}
        }
    }
    let end = Instant::now();
    let span = (end - first.unwrap()).as_secs_f64().max(1e-9);
    println!(
        "records={n} bytes={bytes} first_to_last_s={span:.3} rate={:.0} wall_s={:.3}",
        (n - 1) as f64 / span,
        (end - start).as_secs_f64()
    );
}
