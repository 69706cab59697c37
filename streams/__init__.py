"""The log's contract: record schemas, topic names and keys, codecs, the Faust app factory, replay helpers."""
