"""The event contract: the message catalog, the Avro schemas of every version, the codec."""
