/*
 * labinit: PID 1 of an interlock lab sandbox node.
 *
 * Started by `unshare --mount --uts --pid --net --fork` inside a fresh set of
 * namespaces. It assembles the node's root (an overlay over the host root with
 * the node's own upper dir), pivots into it, then supervises a real sshd:
 *   - SIGHUP to this init is forwarded to sshd (reload);
 *   - if sshd exits (killed, restarted by an admin), it is started again, so a
 *     restart never ends the node;
 *   - orphans are reaped; SIGTERM/SIGINT end the node.
 * Kept in C so that a node costs one tiny process besides sshd: 100 nodes must
 * be SSH-ready in a few seconds on two cores.
 *
 * usage: labinit NODE_DIR HOSTNAME BOOT_DELAY_MS READY_FD
 *        labinit --systemd NODE_DIR HOSTNAME CGROUP_DIR READY_FD
 *   NODE_DIR holds upper/, work/ and merged/ (all created by the lab).
 *   READY_FD gets "ok\n" once the root is built, or the error that stopped it.
 *   /var/lib/interlock-lab/firstboot (in the node) runs once sshd is started.
 *
 * With --systemd it supervises nothing: it moves itself into CGROUP_DIR (the
 * node's own cgroup2 directory, made by the lab), takes a cgroup namespace
 * rooted there, builds the root a container manager would give systemd (a
 * fresh read-only sysfs with cgroup2 on /sys/fs/cgroup, a private /dev,
 * /proc/sys read-only but for /proc/sys/net, tmpfs /run and /tmp) and execs
 * /lib/systemd/systemd as the node's PID 1 with container=other. The node's
 * first boot then happens in units (see rootfs.py).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int ready_fd = -1;

static void die(const char *what) {
    char msg[9000];
    int n = snprintf(msg, sizeof msg, "labinit: %s: %s\n", what, strerror(errno));
    if (ready_fd >= 0 && write(ready_fd, msg, n) < 0) { /* nothing left to tell */ }
    fputs(msg, stderr);
    exit(111);
}

static void must_mount(const char *src, const char *dst, const char *type,
                       unsigned long flags, const char *data) {
    if (mount(src, dst, type, flags, data) != 0) {
        char msg[8800];
        snprintf(msg, sizeof msg, "mount %s on %s", type ? type : src, dst);
        die(msg);
    }
}

static void mount_overlay(const char *node_dir, char *merged, size_t size) {
    char opts[8192];
    snprintf(merged, size, "%s/merged", node_dir);
    snprintf(opts, sizeof opts, "lowerdir=/,upperdir=%s/upper,workdir=%s/work",
             node_dir, node_dir);
    must_mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    must_mount("overlay", merged, "overlay", 0, opts);
}

static void enter_root(const char *merged) {
    if (chdir(merged) != 0) die("chdir merged");
    /* pivot_root(".", ".") stacks the old root on top; detach it. */
    if (syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root");
    if (umount2(".", MNT_DETACH) != 0) die("umount old root");
    if (chdir("/") != 0) die("chdir /");
}

static void build_root(const char *node_dir) {
    char merged[4096], path[4200];
    mount_overlay(node_dir, merged, sizeof merged);
    snprintf(path, sizeof path, "%s/proc", merged);
    must_mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    snprintf(path, sizeof path, "%s/sys", merged);
    must_mount("/sys", path, NULL, MS_BIND | MS_REC, NULL);
    snprintf(path, sizeof path, "%s/dev", merged);
    must_mount("/dev", path, NULL, MS_BIND | MS_REC, NULL);
    /* The node's own /dev/shm, /run and /tmp: nothing shared with the host. */
    snprintf(path, sizeof path, "%s/dev/shm", merged);
    must_mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    snprintf(path, sizeof path, "%s/run", merged);
    must_mount("run", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
    snprintf(path, sizeof path, "%s/tmp", merged);
    must_mount("tmp", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    enter_root(merged);
    mkdir("/run/sshd", 0755);
    mkdir("/run/lock", 01777);
}

/* A path under the new root. */
static const char *at(const char *merged, const char *rel) {
    static char buf[4300];
    snprintf(buf, sizeof buf, "%s/%s", merged, rel);
    return buf;
}

/* Bind `src` onto a fresh empty file at `dst`. */
static void bind_file(const char *src, const char *dst) {
    int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) die(dst);
    close(fd);
    must_mount(src, dst, NULL, MS_BIND, NULL);
}

static void read_only(const char *path, unsigned long extra) {
    must_mount(path, path, NULL, MS_BIND | MS_REC, NULL);
    must_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | extra, NULL);
}

static void join_cgroup(const char *cgroup_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/cgroup.procs", cgroup_dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open the node's cgroup.procs");
    if (write(fd, "0\n", 2) != 2) die("join the node's cgroup");
    close(fd);
    /* systemd must see its own cgroup as the root, never the host's. */
    if (unshare(CLONE_NEWCGROUP) != 0) die("unshare cgroup namespace");
}

static void boot_systemd(const char *node_dir, const char *hostname, const char *cgroup_dir) {
    char merged[4096], path[4300];
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    join_cgroup(cgroup_dir);
    mount_overlay(node_dir, merged, sizeof merged);

    /* /proc: the node's own; its sysctls read-only but for the per-netns net.*. */
    must_mount("proc", at(merged, "proc"), "proc", safe, NULL);
    snprintf(path, sizeof path, "%s/proc/sys", merged);
    read_only(path, safe);
    snprintf(path, sizeof path, "%s/proc/sys/net", merged);
    must_mount(path, path, NULL, MS_BIND, NULL);
    must_mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | safe, NULL);
    snprintf(path, sizeof path, "%s/proc/sysrq-trigger", merged);
    if (access(path, F_OK) == 0) read_only(path, safe);  /* kernels without sysrq */
    /* The kernel tunables kubelet sets (it fails where it cannot): the node's own copies,
     * holding what kubelet wants, so it finds them set and the host's stay untouched. */
    static const char *tunables[][2] = {
        {"vm/overcommit_memory", "1"}, {"vm/panic_on_oom", "0"}, {"kernel/panic", "10"},
        {"kernel/panic_on_oops", "1"}, {"kernel/keys/root_maxkeys", "1000000"},
        {"kernel/keys/root_maxbytes", "25000000"}, {NULL, NULL}};
    for (int i = 0; tunables[i][0]; i++) {
        char copy[4300], dst[4300];
        snprintf(copy, sizeof copy, "%s/sysctl-%d", node_dir, i);
        int fd = open(copy, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) die("write a node's sysctl copy");
        if (write(fd, tunables[i][1], strlen(tunables[i][1])) < 0 || write(fd, "\n", 1) < 0)
            die("write a node's sysctl copy");
        close(fd);
        snprintf(dst, sizeof dst, "%s/proc/sys/%s", merged, tunables[i][0]);
        if (access(dst, F_OK) == 0) must_mount(copy, dst, NULL, MS_BIND, NULL);
    }

    /* A fresh read-only sysfs (no udev, no host devices to take), cgroup2 on top. */
    must_mount("sysfs", at(merged, "sys"), "sysfs", safe | MS_RDONLY, NULL);
    must_mount("cgroup2", at(merged, "sys/fs/cgroup"), "cgroup2", safe, NULL);

    /* A private /dev with only what a container gets. */
    must_mount("dev", at(merged, "dev"), "tmpfs", MS_NOSUID, "mode=755");
    static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};
    for (int i = 0; nodes[i]; i++) {
        char src[64];
        snprintf(src, sizeof src, "/dev/%s", nodes[i]);
        snprintf(path, sizeof path, "%s/dev/%s", merged, nodes[i]);
        bind_file(src, path);
    }
    snprintf(path, sizeof path, "%s/console.log", node_dir);
    bind_file(path, at(merged, "dev/console"));
    mkdir(at(merged, "dev/pts"), 0755);
    must_mount("devpts", at(merged, "dev/pts"), "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620,gid=5");
    if (symlink("pts/ptmx", at(merged, "dev/ptmx")) != 0) die("link /dev/ptmx");
    mkdir(at(merged, "dev/shm"), 01777);
    must_mount("shm", at(merged, "dev/shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mkdir(at(merged, "dev/mqueue"), 0755);
    static const char *links[][2] = {{"/proc/self/fd", "dev/fd"},
                                     {"/proc/self/fd/0", "dev/stdin"},
                                     {"/proc/self/fd/1", "dev/stdout"},
                                     {"/proc/self/fd/2", "dev/stderr"},
                                     /* kubelet's OOM watcher opens it (kind does the same) */
                                     {"console", "dev/kmsg"}, {NULL, NULL}};
    for (int i = 0; links[i][0]; i++)
        if (symlink(links[i][0], at(merged, links[i][1])) != 0) die("link in /dev");

    must_mount("run", at(merged, "run"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
    must_mount("tmp", at(merged, "tmp"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    enter_root(merged);
    if (sethostname(hostname, strlen(hostname)) != 0) die("sethostname");

    int null = open("/dev/null", O_RDONLY);
    if (null < 0) die("open /dev/null");
    dup2(null, 0);
    if (null != 0) close(null);
    if (write(ready_fd, "ok\n", 3) != 3) die("report ready");
    close(ready_fd);
    ready_fd = -1;
    char *argv[] = {"/lib/systemd/systemd", "systemd.unit=multi-user.target", NULL};
    char *envp[] = {"container=other",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    NULL};
    execve(argv[0], argv, envp);
    die("exec /lib/systemd/systemd");
}

static pid_t spawn(char *const argv[], const char *log) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null >= 0) dup2(null, 0);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc == 6 && strcmp(argv[1], "--systemd") == 0) {
        ready_fd = (int)strtol(argv[5], NULL, 10);
        fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
        boot_systemd(argv[2], argv[3], argv[4]);
    }
    if (argc != 5) {
        fprintf(stderr, "usage: labinit NODE_DIR HOSTNAME BOOT_DELAY_MS READY_FD\n"
                        "       labinit --systemd NODE_DIR HOSTNAME CGROUP_DIR READY_FD\n");
        return 2;
    }
    const char *hostname = argv[2];
    long delay_ms = strtol(argv[3], NULL, 10);
    ready_fd = (int)strtol(argv[4], NULL, 10);
    fcntl(ready_fd, F_SETFD, FD_CLOEXEC);

    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");

    build_root(argv[1]);
    if (sethostname(hostname, strlen(hostname)) != 0) die("sethostname");
    if (write(ready_fd, "ok\n", 3) != 3) die("report ready");
    close(ready_fd);
    ready_fd = -1;

    char *sshd_argv[] = {"/usr/sbin/sshd", "-D", "-e", "-f", "/etc/ssh/sshd_config", NULL};
    char *boot_argv[] = {"/bin/sh", "/var/lib/interlock-lab/firstboot", NULL};
    pid_t sshd = -1, firstboot = -1;
    double started = 0, boot_at = now() + delay_ms / 1000.0;
    int booted = 0, restarts = 0;

    for (;;) {
        double t = now();
        if (!booted && t >= boot_at) {
            booted = 1;
            sshd = spawn(sshd_argv, "/var/log/sshd.log");
            started = t;
            if (access(boot_argv[1], R_OK) == 0)
                firstboot = spawn(boot_argv, "/var/log/firstboot.log");
        }
        /* Wait for a signal, waking when the boot delay ends. */
        int timeout_ms = -1;
        if (!booted) timeout_ms = (int)((boot_at - t) * 1000) + 1;
        if (timeout_ms >= 0) {
            struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
            siginfo_t si;
            int sig = sigtimedwait(&all, &si, &ts);
            if (sig < 0) continue;
            /* Put it back through the signalfd path below. */
            if (sig == SIGTERM || sig == SIGINT) break;
            continue;
        }
        struct signalfd_siginfo si;
        if (read(sfd, &si, sizeof si) != sizeof si) continue;
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) break;
        if (si.ssi_signo == SIGHUP && sshd > 0) { kill(sshd, SIGHUP); continue; }
        if (si.ssi_signo != SIGCHLD) continue;
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (pid == firstboot) firstboot = -1;
            if (pid != sshd) continue;
            /* sshd went away: start it again; back off if it keeps dying. */
            restarts = (now() - started < 1.0) ? restarts + 1 : 0;
            if (restarts > 3) usleep(200000);
            sshd = spawn(sshd_argv, "/var/log/sshd.log");
            started = now();
        }
    }
    kill(-1, SIGKILL);
    return 0;
}
