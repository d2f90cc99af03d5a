-- 0016: a worker row names the process table its pid belongs to (the kernel's boot id and the
-- pid namespace), so that another process sharing that table can tell for certain that the
-- worker's process is gone and recover its runs at once instead of waiting out their leases.
-- NULL (rows of older versions, systems without /proc): never judged that way.

ALTER TABLE lg_deploy.workers ADD COLUMN host_key text;
COMMENT ON COLUMN lg_deploy.workers.host_key IS
    'boot id/pid namespace of the process; same key and no such pid: the process is gone';
