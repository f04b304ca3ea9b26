"""Steps 6-7 (log in, secure root, verify) on N nodes: interlock against ansible-playbook.

Usage (as root):
    python bench/secure.py [--nodes 100] [--forks 50] [--json]

Starts a private lab (the built-in aws site, in a lab of its own) and launches 2N
Ubuntu 24.04 instances with one EC2 key pair. Half are secured by interlock's
own steps 6-7 (login discovery from the image's hints; how the node came: root
by key?, password login?; root gets the platform key, password login off, `sshd -T`
shows it, sshd reloaded; then verified: root login with the platform key, no
password method offered), N at once, as many
in flight as ansible's forks. The other half get the same work from
ansible-playbook (`-f FORKS`, pipelining on, the same checks), whose result is
then checked with interlock's verification (not timed).

The floor: right before each tool runs, the same nodes are reached once by a bare
asyncssh connect (the login user, the EC2 key pair, known_hosts=None) and one
`true`, all N at once with as many in flight as the tools get; timed for the
whole batch. It is what any tool needs at minimum to reach each node once, and
it leaves both halves equally warm (one login each) when the tools start.
Interlock's steps 6-7 are printed as a ratio of the floor measured on its own
nodes (goal: at most 1.5x), with each node's median time per phase (login,
securing, verifying) against the floor's median connect + `true`.

Also measured: what a wrong login name costs during discovery, as the time of a
discovery that tries four wrong names before the right one, minus one that
tries the right one first, divided by four (median of five runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh

from interlock.providers.normalize import CANDIDATE_USERS, DEFAULT_USERS
from interlock.ssh import access, keys
from interlock.ssh.sessions import Sessions
from lablib import ec2_client, print_figures, private_aws_lab

UBUNTU = "ami-0e2c8caa4b6378d8c"  # the aws site's Ubuntu 24.04 image (login: ubuntu)
WRONG_FIRST = ["centos", "fedora", "cloud-user", "admin", "ubuntu"]
LOGIN = DEFAULT_USERS["ubuntu"][0]  # the user the EC2 key pair logs in to on that image
RATIO_GOAL = 1.5  # interlock's steps 6-7 at most this many times the floor

PLAYBOOK = r"""
- name: Root access with the platform keys, password login off
  hosts: nodes
  gather_facts: false
  become: true
  tasks:
    - name: /root/.ssh exists
      ansible.builtin.file: {path: /root/.ssh, state: directory, mode: "0700"}
    - name: Root's authorized_keys are exactly the platform keys
      ansible.builtin.copy:
        dest: /root/.ssh/authorized_keys
        content: "{{ platform_keys | join('\n') }}\n"
        mode: "0600"
    - name: The sshd drop-in
      ansible.builtin.copy:
        dest: /etc/ssh/sshd_config.d/00-interlock.conf
        content: |
          PasswordAuthentication no
          KbdInteractiveAuthentication no
          PermitRootLogin prohibit-password
        mode: "0644"
    - name: No conflicting directive in sshd_config
      ansible.builtin.replace:
        path: /etc/ssh/sshd_config
        regexp: '^(\s*(PasswordAuthentication|KbdInteractiveAuthentication|PermitRootLogin)\s.*)$'
        replace: '# \1 (see sshd_config.d)'
    - name: sshd_config includes the drop-ins
      ansible.builtin.lineinfile:
        path: /etc/ssh/sshd_config
        line: Include /etc/ssh/sshd_config.d/*.conf
        insertbefore: BOF
    - name: Check and reload sshd
      ansible.builtin.shell: /usr/sbin/sshd -t && kill -HUP "$(cat /run/sshd.pid)"
      changed_when: true

- name: Verify
  hosts: nodes
  gather_facts: false
  vars:
    ansible_user: root
    ansible_ssh_private_key_file: "{{ platform_key_file }}"
  tasks:
    - name: sshd -T
      ansible.builtin.command: /usr/sbin/sshd -T
      register: sshd
      changed_when: false
    - name: Password login off, root by key only
      ansible.builtin.assert:
        that:
          - "'passwordauthentication no' in sshd.stdout_lines"
          - "'permitrootlogin without-password' in sshd.stdout_lines"
    - name: A password login is refused
      ansible.builtin.command: >-
        ssh -o BatchMode=yes -o PubkeyAuthentication=no
        -o PreferredAuthentications=password,keyboard-interactive
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10
        root@{{ ansible_host }} true
      delegate_to: localhost
      register: attempt
      failed_when: attempt.rc == 0 or 'Permission denied (publickey)' not in attempt.stderr
      changed_when: false
"""


def admit_host(ec2: Any) -> str:
    """A group admitting SSH from the host (the lab's default group, like AWS's, does not)."""
    group = ec2.create_security_group(GroupName="bench-ssh", Description="bench")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                        "IpRanges": [{"CidrIp": "127.0.0.0/8"}]}],
    )  # fmt: skip
    return str(group)


def launch(ec2: Any, count: int) -> list[str]:
    """2N instances from one run_instances call; their public addresses once running."""
    out = ec2.run_instances(
        ImageId=UBUNTU,
        InstanceType="t3.micro",
        MinCount=count,
        MaxCount=count,
        KeyName="bench",
        SecurityGroupIds=[admit_host(ec2)],
    )
    ids = [i["InstanceId"] for i in out["Instances"]]
    ips: dict[str, str] = {}
    deadline = time.monotonic() + 120
    while len(ips) < count:
        for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
            for i in r["Instances"]:
                if i["State"]["Name"] == "running" and i.get("PublicIpAddress"):
                    ips[i["InstanceId"]] = i["PublicIpAddress"]
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ips)} of {count} instances came up")
    return [ips[i] for i in ids]


async def floor(ips: list[str], node_key: Path, forks: int) -> tuple[float, float]:
    """The least any tool needs: each node reached once (a bare asyncssh connect as the
    login user with the EC2 key pair, one `true`), all at once, `forks` in flight.
    Returns the batch's seconds and the median seconds per node."""
    key = asyncssh.read_private_key(node_key)
    slots = asyncio.Semaphore(forks)
    each: list[float] = []

    async def one(ip: str) -> None:
        async with slots:
            start = time.monotonic()
            async with asyncssh.connect(
                ip,
                username=LOGIN,
                client_keys=[key],
                known_hosts=None,
                agent_path=None,
                preferred_auth="publickey",
            ) as conn:
                await conn.run("true", check=True)
            each.append(time.monotonic() - start)

    start = time.monotonic()
    await asyncio.gather(*(one(ip) for ip in ips))
    return time.monotonic() - start, statistics.median(each)


async def interlock_secure(
    ips: list[str], node_key: Path, platform: Path, forks: int
) -> tuple[float, set[str], dict[str, float]]:
    """Interlock's steps 6-7 on `ips`: the batch's seconds, the login users found, and
    each phase's median seconds per node."""
    key = asyncssh.read_private_key(node_key)
    public = [keys.public_of(platform)]
    candidates = [(u, "hint") for u in DEFAULT_USERS["ubuntu"]] + [
        (u, "candidate") for u in CANDIDATE_USERS
    ]
    slots = asyncio.Semaphore(forks)
    users: set[str] = set()
    phases: dict[str, list[float]] = {"login": [], "secure": [], "verify": []}

    async def one(ip: str) -> None:
        async with slots:
            deadline = time.monotonic() + 120
            t0 = time.monotonic()
            sessions = Sessions()  # as an allocation keeps a node's logins between steps
            found = await access.discover_login(ip, key, candidates, deadline, sessions)
            users.add(found.user)
            t1 = time.monotonic()
            await access.root_state(ip, found.user, key, sessions)  # what the node lacked
            await access.secure_root(ip, found.user, key, public, sessions)
            t2 = time.monotonic()
            await access.verify_root(ip, platform, deadline, sessions)
            t3 = time.monotonic()
            await sessions.close(ip)
            for phase, took in zip(phases, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                phases[phase].append(took)

    start = time.monotonic()
    await asyncio.gather(*(one(ip) for ip in ips))
    medians = {p: statistics.median(v) for p, v in phases.items()}
    return time.monotonic() - start, users, medians


async def wrong_user_cost(ip: str, node_key: Path) -> dict[str, float]:
    key = asyncssh.read_private_key(node_key)
    right: list[float] = []
    wrong: list[float] = []
    for _ in range(5):
        for names, into in (([WRONG_FIRST[-1]], right), (WRONG_FIRST, wrong)):
            start = time.monotonic()
            sessions = Sessions()
            found = await access.discover_login(
                ip, key, [(u, "bench") for u in names], time.monotonic() + 60, sessions
            )
            into.append(time.monotonic() - start)
            await sessions.close(ip)
            assert found.user == "ubuntu", found
    per_wrong = (statistics.median(wrong) - statistics.median(right)) / (len(WRONG_FIRST) - 1)
    return {
        "login_right_first_seconds": round(statistics.median(right), 3),
        "login_four_wrong_first_seconds": round(statistics.median(wrong), 3),
        "seconds_per_wrong_user": round(per_wrong, 3),
    }


def ansible_secure(work: Path, ips: list[str], node_key: Path, platform: Path, forks: int) -> float:
    inventory = work / "inventory.ini"
    inventory.write_text(
        "[nodes]\n"
        + "".join(f"n{i} ansible_host={ip}\n" for i, ip in enumerate(ips))
        + "[nodes:vars]\nansible_user=ubuntu\n"
        + f"ansible_ssh_private_key_file={node_key}\n"
        + "ansible_python_interpreter=/usr/bin/python3\n"
    )
    (work / "play.yaml").write_text(PLAYBOOK)
    (work / "vars.json").write_text(
        json.dumps(
            {"platform_keys": [keys.public_of(platform)], "platform_key_file": str(platform)}
        )
    )
    env = dict(
        os.environ,
        ANSIBLE_HOME=str(work / "ansible"),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible" / "tmp"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(work / "cp"),
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_PIPELINING="1",
        ANSIBLE_SSH_RETRIES="5",
        ANSIBLE_TIMEOUT="30",
    )
    playbook = Path(sys.executable).parent / "ansible-playbook"
    cmd = [str(playbook), "-i", str(inventory), "-f", str(forks), "-e", f"@{work / 'vars.json'}"]
    start = time.monotonic()
    done = subprocess.run(
        [*cmd, str(work / "play.yaml")], env=env, capture_output=True, text=True, cwd=work
    )
    took = time.monotonic() - start
    if done.returncode != 0:
        tail = "\n".join(done.stdout.splitlines()[-30:])
        raise SystemExit(f"ansible-playbook failed ({done.returncode}):\n{tail}\n{done.stderr}")
    return took


async def verify_all(ips: list[str], platform: Path) -> None:
    async def one(ip: str) -> None:
        sessions = Sessions()
        await access.verify_root(ip, platform, time.monotonic() + 60, sessions)
        await sessions.close(ip)

    await asyncio.gather(*(one(ip) for ip in ips))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.nodes
    with private_aws_lab() as (work, sites):
        node_key, platform = work / "node_ed25519", work / "platform_ed25519"
        public = keys.new_key(node_key, "bench-node")
        keys.new_key(platform, "bench-platform")
        ec2 = ec2_client(sites)
        ec2.import_key_pair(KeyName="bench", PublicKeyMaterial=public.encode())
        ips = launch(ec2, 2 * n + 1)
        ours, theirs, probe = ips[:n], ips[n : 2 * n], ips[-1]
        asyncio.run(_wait_all(ips))
        wrong = asyncio.run(wrong_user_cost(probe, node_key))
        # The floor on each half right before its tool runs: both start equally warm.
        floor_s, floor_each = asyncio.run(floor(ours, node_key, args.forks))
        ours_s, users, phases = asyncio.run(interlock_secure(ours, node_key, platform, args.forks))
        floor_theirs_s, _ = asyncio.run(floor(theirs, node_key, args.forks))
        theirs_s = ansible_secure(work, theirs, node_key, platform, args.forks)
        asyncio.run(verify_all(theirs, platform))  # ansible's result holds by our checks too
    ratio = ours_s / floor_s
    figures: dict[str, Any] = {
        "nodes_each": n,
        "forks": args.forks,
        "interlock_seconds": round(ours_s, 2),
        "ansible_playbook_seconds": round(theirs_s, 2),
        "ansible_over_interlock": round(theirs_s / ours_s, 1),
        "floor_seconds": round(floor_s, 2),
        "interlock_steps_6_7_seconds": round(ours_s, 2),
        "ratio_to_floor": round(ratio, 2),
        "ratio_to_floor_goal": RATIO_GOAL,
        "ratio_within_goal": ratio <= RATIO_GOAL,
        "floor_per_node_median_seconds": round(floor_each, 3),
        **{f"interlock_{p}_per_node_median_seconds": round(t, 3) for p, t in phases.items()},
        "floor_ansible_nodes_seconds": round(floor_theirs_s, 2),
        "ansible_ratio_to_floor": round(theirs_s / floor_theirs_s, 2),
        "login_users_found": sorted(users),
        **wrong,
    }
    if not args.json:  # two decimals, and the goal beside the ratio
        figures["ratio_to_floor"] = f"{ratio:.2f}x (goal <= {RATIO_GOAL:.2f}x)"
        figures["ratio_to_floor_goal"] = f"<= {RATIO_GOAL:.2f}x"
        figures["ansible_ratio_to_floor"] = f"{theirs_s / floor_theirs_s:.2f}x"
    print_figures(figures, args.json)
    return 0


async def _wait_all(ips: list[str]) -> None:
    deadline = time.monotonic() + 120
    await asyncio.gather(*(access.wait_for_ssh(ip, deadline) for ip in ips))


if __name__ == "__main__":
    sys.exit(main())
