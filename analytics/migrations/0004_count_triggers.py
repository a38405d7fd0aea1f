"""
The triggers that write a `CountDelta` row for every change a figure counts, in the changing transaction.
PostgreSQL only: on SQLite (the embedded demo) the beat job recounts recent hours instead.

A message's share of the counts is a function of its row (`analytics_message_counts`): on an update the
trigger writes the new share minus the old one, so a status that moves forward, a late report that moves
a step's time into another hour, or a failure the provider later takes back each leave exact figures.
"""

from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION analytics_message_counts(m whatsapp_message)
RETURNS TABLE (provider_id bigint, template_id bigint, period timestamptz, metric text, n integer, total numeric)
LANGUAGE sql STABLE AS $$
    SELECT m.provider_id, c.template_id, c.period, c.metric, 1, c.total
    FROM (VALUES
        (CASE WHEN m.direction = 'inbound' THEN 'received:' || m.message_type END, NULL::bigint,
         date_trunc('hour', coalesce(m.received_at, m.created_at), 'UTC'), 0::numeric),
        (CASE WHEN m.direction = 'inbound' AND m.intent <> '' THEN 'intent:' || m.intent END, NULL,
         date_trunc('hour', coalesce(m.received_at, m.created_at), 'UTC'), 0),
        (CASE WHEN m.direction = 'inbound' AND m.sentiment <> '' THEN 'sentiment:' || m.sentiment END, NULL,
         date_trunc('hour', coalesce(m.received_at, m.created_at), 'UTC'), 0),
        (CASE WHEN m.direction = 'outbound' AND m.sent_at IS NOT NULL THEN 'sent:' || m.message_type END, NULL,
         date_trunc('hour', m.sent_at, 'UTC'), 0),
        (CASE WHEN m.direction = 'outbound' AND m.delivered_at IS NOT NULL THEN 'delivered' END, NULL,
         date_trunc('hour', m.delivered_at, 'UTC'), 0),
        (CASE WHEN m.direction = 'outbound' AND m.read_at IS NOT NULL THEN 'read' END, NULL,
         date_trunc('hour', m.read_at, 'UTC'), 0),
        (CASE WHEN m.direction = 'outbound' AND m.status = 'failed' THEN 'failed:' || m.error_code END, NULL,
         date_trunc('hour', coalesce(m.failed_at, m.created_at), 'UTC'), 0),
        (CASE WHEN m.dead_lettered_at IS NOT NULL THEN 'dead_letter' END, NULL,
         date_trunc('hour', m.dead_lettered_at, 'UTC'), 0),
        (CASE WHEN m.response_seconds IS NOT NULL THEN 'reply_time' END, NULL,
         date_trunc('hour', m.created_at, 'UTC'), round(m.response_seconds::numeric, 6)),
        (CASE WHEN m.first_response THEN 'first_response' END, NULL,
         date_trunc('hour', m.created_at, 'UTC'), round(coalesce(m.response_seconds, 0)::numeric, 6)),
        -- Per template, by the day the message was queued.
        (CASE WHEN m.template_id IS NOT NULL AND m.direction = 'outbound' AND m.sent_at IS NOT NULL
              THEN 'sent' END, m.template_id, date_trunc('day', m.created_at, 'UTC'), 0),
        (CASE WHEN m.template_id IS NOT NULL AND m.direction = 'outbound' AND m.delivered_at IS NOT NULL
              THEN 'delivered' END, m.template_id, date_trunc('day', m.created_at, 'UTC'), 0),
        (CASE WHEN m.template_id IS NOT NULL AND m.direction = 'outbound' AND m.read_at IS NOT NULL
              THEN 'read' END, m.template_id, date_trunc('day', m.created_at, 'UTC'), 0),
        (CASE WHEN m.template_id IS NOT NULL AND m.direction = 'outbound' AND m.status = 'failed'
              THEN 'failed' END, m.template_id, date_trunc('day', m.created_at, 'UTC'), 0)
    ) AS c (metric, template_id, period, total)
    WHERE c.metric IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION analytics_message_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    at_hour timestamptz;
    answered record;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
        SELECT c.provider_id, c.template_id, c.period, c.metric, sum(c.n), sum(c.total)
        FROM (SELECT * FROM analytics_message_counts(NEW)
              UNION ALL
              SELECT o.provider_id, o.template_id, o.period, o.metric, -o.n, -o.total
              FROM analytics_message_counts(OLD) o) c
        GROUP BY 1, 2, 3, 4
        HAVING sum(c.n) <> 0 OR sum(c.total) <> 0;
        RETURN NULL;
    END IF;

    INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
    SELECT c.provider_id, c.template_id, c.period, c.metric, c.n, c.total FROM analytics_message_counts(NEW) c;
    IF NEW.direction <> 'inbound' THEN
        RETURN NULL;
    END IF;

    -- A customer who wrote in this hour: counted once per hour, however many messages.
    at_hour := date_trunc('hour', coalesce(NEW.received_at, NEW.created_at), 'UTC');
    INSERT INTO analytics_contacthour (provider_id, hour, conversation_id)
    VALUES (NEW.provider_id, at_hour, NEW.conversation_id) ON CONFLICT DO NOTHING;
    IF FOUND THEN
        INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
        VALUES (NEW.provider_id, NULL, at_hour, 'contacts', 1, 0);
    END IF;

    -- A reply within a day of a template message credits the latest one, once.
    SELECT t.id, t.template_id, t.provider_id, t.created_at INTO answered
    FROM whatsapp_message t
    WHERE t.conversation_id = NEW.conversation_id AND t.direction = 'outbound' AND t.template_id IS NOT NULL
      AND t.sent_at IS NOT NULL AND t.created_at <= NEW.created_at
      AND t.created_at > NEW.created_at - interval '24 hours'
    ORDER BY t.created_at DESC LIMIT 1;
    IF FOUND THEN
        INSERT INTO analytics_templatereply (message_id, replied_at) VALUES (answered.id, NEW.created_at)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
            VALUES (answered.provider_id, answered.template_id, date_trunc('day', answered.created_at, 'UTC'),
                    'replied', 1, 0);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION analytics_conversation_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
    VALUES (NEW.provider_id, NULL, date_trunc('hour', NEW.created_at, 'UTC'), 'new_contacts', 1, 0);
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION analytics_session_opened() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
    SELECT c.provider_id, NULL, date_trunc('hour', NEW.opened_at, 'UTC'), 'conversations_opened', 1, 0
    FROM whatsapp_conversation c WHERE c.id = NEW.conversation_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION analytics_consent_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    latest record;
BEGIN
    INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
    VALUES ((SELECT m.provider_id FROM whatsapp_message m WHERE m.id = NEW.message_id), NULL,
            date_trunc('hour', NEW.created_at, 'UTC'), 'opt_outs', 1, 0);
    -- An opt-out within a week of a template message counts against the latest one.
    SELECT t.template_id, t.provider_id, t.created_at INTO latest
    FROM whatsapp_message t JOIN whatsapp_conversation c ON c.id = t.conversation_id
    WHERE c.contact_id = NEW.contact_id AND t.direction = 'outbound' AND t.template_id IS NOT NULL
      AND t.created_at <= NEW.created_at AND t.created_at > NEW.created_at - interval '7 days'
    ORDER BY t.created_at DESC LIMIT 1;
    IF FOUND THEN
        INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
        VALUES (latest.provider_id, latest.template_id, date_trunc('day', latest.created_at, 'UTC'),
                'opted_out', 1, 0);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION analytics_ai_call_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_countdelta (provider_id, template_id, period, metric, count, total)
    VALUES (NEW.provider_id, NULL, date_trunc('hour', NEW.created_at, 'UTC'), 'ai_calls:' || NEW.feature, 1,
            NEW.cost);
    RETURN NULL;
END $$;

CREATE TRIGGER analytics_message_inserted AFTER INSERT ON whatsapp_message
    FOR EACH ROW EXECUTE FUNCTION analytics_message_changed();
CREATE TRIGGER analytics_message_updated AFTER UPDATE ON whatsapp_message
    FOR EACH ROW WHEN (
        OLD.status IS DISTINCT FROM NEW.status OR OLD.error_code IS DISTINCT FROM NEW.error_code
        OR OLD.sent_at IS DISTINCT FROM NEW.sent_at OR OLD.delivered_at IS DISTINCT FROM NEW.delivered_at
        OR OLD.read_at IS DISTINCT FROM NEW.read_at OR OLD.failed_at IS DISTINCT FROM NEW.failed_at
        OR OLD.dead_lettered_at IS DISTINCT FROM NEW.dead_lettered_at
        OR OLD.received_at IS DISTINCT FROM NEW.received_at OR OLD.message_type IS DISTINCT FROM NEW.message_type
        OR OLD.intent IS DISTINCT FROM NEW.intent OR OLD.sentiment IS DISTINCT FROM NEW.sentiment
        OR OLD.response_seconds IS DISTINCT FROM NEW.response_seconds
        OR OLD.first_response IS DISTINCT FROM NEW.first_response
        OR OLD.template_id IS DISTINCT FROM NEW.template_id OR OLD.provider_id IS DISTINCT FROM NEW.provider_id
        OR OLD.direction IS DISTINCT FROM NEW.direction OR OLD.created_at IS DISTINCT FROM NEW.created_at
    ) EXECUTE FUNCTION analytics_message_changed();
CREATE TRIGGER analytics_conversation_created AFTER INSERT ON whatsapp_conversation
    FOR EACH ROW EXECUTE FUNCTION analytics_conversation_created();
CREATE TRIGGER analytics_session_opened AFTER INSERT ON whatsapp_session
    FOR EACH ROW EXECUTE FUNCTION analytics_session_opened();
CREATE TRIGGER analytics_consent_changed AFTER INSERT ON contacts_consentevent
    FOR EACH ROW WHEN (NEW.state = 'opted_out') EXECUTE FUNCTION analytics_consent_changed();
CREATE TRIGGER analytics_ai_call_recorded AFTER INSERT ON ai_aicall
    FOR EACH ROW WHEN (NEW.status <> 'skipped') EXECUTE FUNCTION analytics_ai_call_recorded();
"""

DROP = """
DROP TRIGGER IF EXISTS analytics_message_inserted ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_message_updated ON whatsapp_message;
DROP TRIGGER IF EXISTS analytics_conversation_created ON whatsapp_conversation;
DROP TRIGGER IF EXISTS analytics_session_opened ON whatsapp_session;
DROP TRIGGER IF EXISTS analytics_consent_changed ON contacts_consentevent;
DROP TRIGGER IF EXISTS analytics_ai_call_recorded ON ai_aicall;
DROP FUNCTION IF EXISTS analytics_message_changed();
DROP FUNCTION IF EXISTS analytics_message_counts(whatsapp_message);
DROP FUNCTION IF EXISTS analytics_conversation_created();
DROP FUNCTION IF EXISTS analytics_session_opened();
DROP FUNCTION IF EXISTS analytics_consent_changed();
DROP FUNCTION IF EXISTS analytics_ai_call_recorded();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)
    return run


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_squashed_counts"),
        ("whatsapp", "0014_reply_waits"),
        ("contacts", "0008_storage_group_permissions"),
        ("ai", "0004_alter_aicall_feature"),
    ]

    operations = [migrations.RunPython(_on_postgresql(FUNCTIONS), _on_postgresql(DROP))]
