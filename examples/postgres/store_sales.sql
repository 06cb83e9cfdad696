-- Tables for examples/store-sales-postgres.yaml.
--   psql "postgres://weir@postgres.db.svc:5432/shop" -f examples/postgres/store_sales.sql
--
-- Written in mode transactional: each window exactly once (a prepared transaction per
-- subtask and checkpoint, committed when the checkpoint completes). The server needs
-- max_prepared_transactions of at least twice the job's parallelism (postgresql.conf).
CREATE TABLE IF NOT EXISTS store_sales (
    store_id     text      NOT NULL,
    window_start timestamp NOT NULL,
    window_end   timestamp NOT NULL,
    orders       bigint    NOT NULL,
    sales        bigint    NOT NULL,
    PRIMARY KEY (store_id, window_start)
);

-- Written in mode upsert: by the primary key, at every checkpoint; a replay overwrites
-- the same rows. weir_sink_progress (created by the sink) says which checkpoint each
-- subtask's rows reflect.
CREATE TABLE IF NOT EXISTS store_sales_latest (
    store_id     text      NOT NULL,
    window_start timestamp NOT NULL,
    window_end   timestamp NOT NULL,
    orders       bigint    NOT NULL,
    sales        bigint    NOT NULL,
    PRIMARY KEY (store_id, window_start)
);
