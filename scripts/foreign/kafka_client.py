"""A Kafka client this project did not write (confluent-kafka), for the foreign-input tests.

  produce BROKERS TOPIC SPEC   writes the records of SPEC, a JSON list of
                               {"key": hex|null, "value": hex|null, "headers": [[name, hex|null], ...]}
  consume BROKERS TOPIC COUNT  reads COUNT records from the start of TOPIC (30 s at most) and
                               prints one JSON line each, in the same shape

Bytes travel as hex so that any byte, and null, survives the trip through the shell.
"""

import json
import sys
import uuid

from confluent_kafka import Consumer, Producer


def unhex(value):
    return None if value is None else bytes.fromhex(value)


def tohex(value):
    return None if value is None else value.hex()


def produce(brokers, topic, spec):
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True})
    failures = []

    def report(err, _msg):
        if err is not None:
            failures.append(str(err))

    for record in json.loads(spec):
        producer.produce(
            topic,
            key=unhex(record.get("key")),
            value=unhex(record.get("value")),
            headers=[(name, unhex(value)) for name, value in record.get("headers", [])],
            on_delivery=report,
        )
    left = producer.flush(30)
    if left or failures:
        sys.exit(f"produce failed: {left} unsent, errors {failures}")


def consume(brokers, topic, count):
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"foreign-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen = 0
    try:
        for _ in range(300):
            if seen >= count:
                break
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            if msg.error():
                continue
            headers = [[name, tohex(value)] for name, value in (msg.headers() or [])]
            print(json.dumps({"key": tohex(msg.key()), "value": tohex(msg.value()), "headers": headers}), flush=True)
            seen += 1
    finally:
        consumer.close()
    if seen < count:
        sys.exit(f"consumed {seen} of {count} records from {topic}")


def main():
    command, brokers, topic, arg = sys.argv[1:5]
    if command == "produce":
        produce(brokers, topic, arg)
    elif command == "consume":
        consume(brokers, topic, int(arg))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
