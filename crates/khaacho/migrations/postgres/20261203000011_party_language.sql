-- The language a party's messages are written in (issue: templates "chosen by the party's
-- language setting"): en | ne; NULL = not set, messages follow the language the party writes
-- in (its conversation), else English.
ALTER TABLE retailers ADD COLUMN language text CHECK (language IN ('en', 'ne'));
ALTER TABLE vendors ADD COLUMN language text CHECK (language IN ('en', 'ne'));
