-- Notifications written by consumers of order.changed (DESIGN §13): a retried consumer
-- batch must not write a message twice, so each notification carries a key (the event or
-- offer it is about, the recipient and the template); messages without one (replies) keep NULL,
-- which a unique index allows any number of times on both backends.
ALTER TABLE outbound_messages ADD COLUMN dedup_key text;
CREATE UNIQUE INDEX outbound_messages_dedup_key_idx ON outbound_messages (dedup_key);
