-- A party's e-mail address (issue 11: the e-mail adapter): NULL = none, nothing is e-mailed.
ALTER TABLE retailers ADD COLUMN email text;
ALTER TABLE vendors ADD COLUMN email text;
