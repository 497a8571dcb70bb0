# Job names are data, never code: any file name a user can give a .blend
# renders into out/<name>/, and nothing in the name is ever run by a shell or
# read as an option or a Blender output-path pattern.
#
# A name cannot contain "/", so injected commands write a marker with a
# relative path (the cwd of whatever ran it) or into $HOME via `cd;`; the
# test looks in every plausible place.

import os
from pathlib import Path

import pytest

import rfslib as R


pytestmark = pytest.mark.deadline(60)

TAG = "rfs_pwned_%d" % os.getpid()

NAMES = [
    ("space", "my shot"),
    ("single_quote", "it's"),
    ("double_quote", 'say "hi"'),
    ("dollar_paren", "$(touch %s_dollar)" % TAG),
    ("dollar_paren_home", "$(cd;touch %s_home)" % TAG),
    ("backticks", "`touch %s_bt`" % TAG),
    ("semicolon", "a;touch %s_semi;b" % TAG),
    ("newline", "two\nlines"),
    ("accents", "café crème"),
    ("cjk", "日本"),
    ("leading_dash", "-o x"),
    ("percent_hash", "100% #1 %s%n"),
]


def marker_hits(base):
    places = [Path("/"), Path("/tmp"), Path(os.path.expanduser("~")), R.REPO,
              Path(os.getcwd()), Path(base)]
    hits = []
    for d in places:
        try:
            hits += [str(d / n) for n in os.listdir(d) if n.startswith(TAG)]
        except OSError:
            pass
    for root, dirs, files in os.walk(base):
        if "mnt" in dirs and root == str(base):
            dirs.remove("mnt")
        hits += [os.path.join(root, n) for n in files + dirs if n.startswith(TAG)]
    return sorted(set(hits))


@pytest.mark.parametrize("name", [n for _, n in NAMES], ids=[i for i, _ in NAMES])
def test_name_is_only_data(rfs, scenes, name, tmp_path):
    assert marker_hits(tmp_path) == []
    mnt = rfs()
    mnt.drop(name, scenes.plain, "1-2\n")
    s = mnt.wait_done(name)
    if "\n" not in name:
        assert s["job"] == name, s
    jd = mnt.job_dir(name)
    assert name in os.listdir(mnt.out), os.listdir(mnt.out)
    assert mnt.frames(name) == ["frame_0001.png", "frame_0002.png"]
    for n in mnt.frames(name):
        assert R.image_size(jd / n) == (32, 24)
    v = R.ffprobe(jd / (name + ".mp4"))
    assert v["nb_read_frames"] == 2
    assert sorted(os.listdir(jd / "logs")) == ["frame_0001.log", "frame_0002.log"]
    hits = marker_hits(tmp_path)
    assert hits == [], "a command in the job name was run: %s" % hits
    mnt.stop()
    hits = marker_hits(tmp_path)
    assert hits == [], "a command in the job name was run: %s" % hits
