-- Tables for examples/store-sales-mysql.yaml (MySQL 8 or MariaDB 10.5+; InnoDB).
--   mysql -h mysql.db.svc -u weir -p shop < examples/mysql/store_sales.sql
--
-- Written in mode transactional: each window exactly once (an XA transaction per subtask
-- and checkpoint, prepared at the barrier, committed when the checkpoint completes).
CREATE TABLE IF NOT EXISTS store_sales (
    store_id     VARCHAR(64) NOT NULL,
    window_start DATETIME(3) NOT NULL,
    window_end   DATETIME(3) NOT NULL,
    orders       BIGINT      NOT NULL,
    sales        BIGINT      NOT NULL,
    PRIMARY KEY (store_id, window_start)
) ENGINE = InnoDB;

-- Written in mode upsert: by the primary key (ON DUPLICATE KEY UPDATE), at every
-- checkpoint; a replay overwrites the same rows. weir_sink_progress (created by the sink)
-- says which checkpoint each subtask's rows reflect.
CREATE TABLE IF NOT EXISTS store_sales_latest (
    store_id     VARCHAR(64) NOT NULL,
    window_start DATETIME(3) NOT NULL,
    window_end   DATETIME(3) NOT NULL,
    orders       BIGINT      NOT NULL,
    sales        BIGINT      NOT NULL,
    PRIMARY KEY (store_id, window_start)
) ENGINE = InnoDB;
