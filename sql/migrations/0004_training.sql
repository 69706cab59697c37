-- Training results: the evidence behind each trained configuration and every lifecycle decision about it.
--
-- * optuna keeps its studies in its own schema (`optuna`), so its table names (studies, trials, ...) never meet
--   ours; TradePulse mirrors what it needs of every trial into optimization_trials.
-- * A configuration that fails even the in-sample screens is kept as REJECTED, with its reasons, rather than
--   dropped: a rerun shows what was tried and why it did not make it.

CREATE SCHEMA IF NOT EXISTS optuna;

ALTER TABLE trained_configurations DROP CONSTRAINT trained_configurations_stage_check;
ALTER TABLE trained_configurations ADD CONSTRAINT trained_configurations_stage_check
    CHECK (stage IN ('REJECTED', 'DISCOVERY', 'VALIDATION', 'MATURE'));

ALTER TABLE trained_configurations
    ADD COLUMN study                text,
    ADD COLUMN trial_number         integer,
    ADD COLUMN significance_metrics jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN stage_reasons        jsonb NOT NULL DEFAULT '[]';
CREATE INDEX trained_configurations_study_idx ON trained_configurations (study);

CREATE INDEX optimization_trials_objective_idx ON optimization_trials (study, objective DESC NULLS LAST);

-- One row per decision: the stage a configuration reached, every rule with its value and threshold, and the rule
-- set's version, so a decision can be audited and re-made when the rules change.
CREATE TABLE lifecycle_decisions (
    decision_id      text        PRIMARY KEY,
    configuration_id text        NOT NULL REFERENCES trained_configurations (id) ON DELETE CASCADE,
    decided_at       timestamptz NOT NULL DEFAULT now(),
    previous_stage   text,
    stage            text        NOT NULL CHECK (stage IN ('REJECTED', 'DISCOVERY', 'VALIDATION', 'MATURE')),
    rules_version    text        NOT NULL,
    checks           jsonb       NOT NULL DEFAULT '[]',
    reasons          jsonb       NOT NULL DEFAULT '[]'
);
CREATE INDEX lifecycle_decisions_configuration_idx ON lifecycle_decisions (configuration_id, decided_at DESC);
