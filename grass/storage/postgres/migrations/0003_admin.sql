-- The operators' stores (grass.storage.admin) over the administration tables of 0001.

-- One active ban per target; lifted bans stay as history.
CREATE UNIQUE INDEX bans_active_network_key ON bans (network)
    WHERE lifted_at IS NULL AND network IS NOT NULL;
CREATE UNIQUE INDEX bans_active_user_key ON bans (user_id)
    WHERE lifted_at IS NULL AND user_id IS NOT NULL;
CREATE INDEX bans_created_idx ON bans (created_at, id);
ALTER TABLE bans ADD CONSTRAINT bans_lifted_after_created
    CHECK (lifted_at IS NULL OR lifted_at >= created_at);

-- The audit log pages by (at, id) and filters by target.
CREATE INDEX admin_audit_log_at_id_idx ON admin_audit_log (at, id);
CREATE INDEX admin_audit_log_target_idx ON admin_audit_log (target_id, at, id);

-- The operators' list of online devices pages by id.
CREATE INDEX devices_online_id_idx ON devices (id) WHERE status = 'online';
