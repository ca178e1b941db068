"""``espmail users import`` and ``espmail groups import``: CSV and JSON, bad rows reported by line, the rest
imported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from espmail.domain.people import GroupKind, Membership, Role
from espmail.storage.groups import GroupRepository
from espmail.storage.users import UserRepository
from tests.integration.cli_support import RUTH, assert_one_line_error, run, seeded

USERS_CSV = """\
username,user_id,email,first_name,last_name,roles,is_active,opted_out,guardian_name,guardian_email,emergency_name,emergency_email
teacher_ana,501,ana@school.example.edu,Ana,Lima,teacher,true,false,,,,
student_bo,502,bo@students.example.net,Bo,Chen,student,yes,no,Mei Chen,mei.chen@family.example.org,,
broken_mail,503,not-an-address,X,Y,student,,,,,,
,504,noname@example.org,No,Name,student,,,,,,
student_cy,505,cy@students.example.net,Cy,Diaz,student;teacher,1,0,,,Ed Diaz,ed@family.example.org
student_dd,abc,dd@students.example.net,D,D,student,,,,,,
student_ee,507,ee@students.example.net,E,E,wizard,,,,,,
too_many,508,tm@students.example.net,T,M,student,,,,,,,extra
teacher_ana,509,ana2@school.example.edu,Ana,Again,teacher,,,,,,
student_ff,510,ff@students.example.net,F,F,student,maybe,,,,,
"""


def test_users_csv_imports_good_rows_and_names_each_bad_line(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(USERS_CSV)

    result = run(stack, "users", "import", str(path))

    assert_one_line_error(result, 1, "7 rows of", "were not imported (lines 4, 5, 7, 8, 9, 10, 11); the rest were")
    assert "imported 3 users" in result.output
    for line, why in {
        4: "email 'not-an-address' is not an email address",
        5: "username is empty",
        7: "user_id 'abc' is not a whole number",
        8: "role 'wizard' is not one of student, teacher, admin",
        9: "has 13 fields but the header names 12",
        10: "username 'teacher_ana' already appears on line 2",
        11: "is_active is 'maybe'; use true or false",
    }.items():
        assert f"users.csv: line {line}: {why}" in result.stderr, (line, result.stderr)
    users = UserRepository()
    bo = users.get("student_bo")
    cy = users.get("student_cy")
    assert bo is not None
    assert bo.guardian_email == "mei.chen@family.example.org"
    assert bo.is_active
    assert cy is not None
    assert cy.roles == {Role.STUDENT, Role.TEACHER}
    assert cy.emergency_email == "ed@family.example.org"
    ana = users.get("teacher_ana")
    assert ana is not None
    assert ana.email == "ana@school.example.edu"
    assert users.get("broken_mail") is None
    assert [u.username for u in users.find_by_email("ANA@school.example.edu")] == ["teacher_ana"]


def test_users_json_reports_the_line_each_bad_entry_starts_on(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    path.write_text(
        "[\n"
        '  {"username": "lin2", "user_id": 7, "email": "lin2@example.net", "roles": ["teacher", "admin"]},\n'
        "  {\n"
        '    "username": "nobody",\n'
        '    "user_id": true,\n'
        '    "email": "nobody@example.net"\n'
        "  },\n"
        '  {"username": "mo", "user_id": "8", "email": "mo@example.net", "opted_out": true, "shoe_size": 9},\n'
        '  {"username": "pat", "user_id": 9, "email": "pat@example.net", "is_active": false}\n'
        "]\n"
    )

    result = run(stack, "users", "import", str(path))

    assert result.exit_code == 1
    assert "people.json: line 3: user_id must be a whole number" in result.stderr
    assert "people.json: line 8: unknown field(s) 'shoe_size'" in result.stderr
    users = UserRepository()
    lin = users.get("lin2")
    pat = users.get("pat")
    assert lin is not None
    assert lin.roles == {Role.TEACHER, Role.ADMIN}
    assert pat is not None
    assert not pat.is_active
    assert users.get("mo") is None


def test_many_users_are_written_in_batches(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "many.csv"
    rows = [f"s{n},{1000 + n},s{n}@students.example.net,S,{n},student" for n in range(130)]
    path.write_text("username,user_id,email,first_name,last_name,roles\n" + "\n".join(rows) + "\n")

    result = run(stack, "users", "import", str(path))

    assert result.exit_code == 0, result.output
    assert "imported 130 users" in result.output
    assert len(list(UserRepository().scan_all())) == 130


def test_files_a_person_gets_wrong_are_one_clear_line(stack: Any, tmp_path: Path) -> None:
    missing = run(stack, "users", "import", str(tmp_path / "nope.csv"))
    folder = run(stack, "users", "import", str(tmp_path))
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("username,user_id,email\nrené,1,rene@example.org\n".encode("latin-1"))
    not_utf8 = run(stack, "users", "import", str(latin1))
    typo = tmp_path / "typo.csv"
    typo.write_text("username,user_id,emial\nx,1,x@example.org\n")
    unknown_column = run(stack, "users", "import", str(typo))
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("username,email\nx,x@example.org\n")
    no_id = run(stack, "users", "import", str(lacking))
    broken_json = tmp_path / "broken.json"
    broken_json.write_text('[\n  {"username": "x", "user_id": 1, "email": "x@example.org"}\n  {"username": "y"}\n]\n')
    syntax = run(stack, "users", "import", str(broken_json))
    an_object = tmp_path / "object.json"
    an_object.write_text('{"username": "x"}')
    not_a_list = run(stack, "users", "import", str(an_object))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    nothing = run(stack, "users", "import", str(empty))
    unreadable = tmp_path / "locked.csv"
    unreadable.write_text("username,user_id,email\n")
    unreadable.chmod(0)
    try:
        locked = run(stack, "users", "import", str(unreadable))
    finally:
        unreadable.chmod(0o600)

    assert_one_line_error(missing, 1, "nope.csv: no such file")
    assert_one_line_error(folder, 1, "is a folder, not a file")
    assert_one_line_error(not_utf8, 1, "is not UTF-8 text")
    assert_one_line_error(unknown_column, 1, "line 1: unknown column(s) 'emial'")
    assert_one_line_error(no_id, 1, "the header lacks user_id (required)")
    assert_one_line_error(syntax, 1, "broken.json line 3 column 3: Expecting ',' delimiter; nothing was imported")
    assert_one_line_error(not_a_list, 1, "must hold a JSON list of objects")
    assert_one_line_error(nothing, 1, "is empty; the first line must name the columns")
    if locked.exit_code != 0:  # root reads any file; everyone else is refused
        assert_one_line_error(locked, 1, "cannot read", "Permission denied")
    assert list(UserRepository().scan_all()) == []


def test_groups_and_memberships_from_csv_make_a_working_class_list(stack: Any, tmp_path: Path) -> None:
    program = seeded(stack)
    groups_csv = tmp_path / "groups.csv"
    groups_csv.write_text(
        "code,kind,title,program,directors_email,class_code,sections\n"
        "X9001,class,Rocketry,Splash Fall 2026,splash-directors@mit.example.edu,,X9001s1;X9001s2\n"
        "X9001s1,section,Rocketry,Splash Fall 2026,splash-directors@mit.example.edu,X9001,\n"
        "X9001s2,section,Rocketry,Splash Fall 2026,splash-directors@mit.example.edu,X9001,\n"
        "X9002,planet,Nowhere,,,,\n"
        "bad code,class,Spaces,,,,\n"
    )
    members_csv = tmp_path / "members.csv"
    students = [u.username for u in program.users if not u.is_staff][:3]
    members_csv.write_text(
        "code,username,role\n"
        "X9001s1,teacher_ruth,teacher\n"
        f"X9001s1,{students[0]},student\n"
        f"X9001s2,{students[1]},student\n"
        f"X9001s2,{students[2]},pupil\n"
    )

    made = run(stack, "groups", "import", str(groups_csv))
    joined = run(stack, "groups", "import", str(members_csv))
    reaches = run(stack, "lists", "test", "X9001-class", "--from", RUTH)

    assert made.exit_code == 1
    assert "groups.csv: line 5: kind 'planet' is not one of class, section, group" in made.stderr
    assert "groups.csv: line 6: code 'bad code' has a space" in made.stderr
    assert "imported 3 groups and 0 memberships" in made.output
    assert joined.exit_code == 1
    assert "members.csv: line 5: role 'pupil' is not one of student, teacher, admin" in joined.stderr
    groups = GroupRepository()
    x9001 = groups.get("X9001")
    assert x9001 is not None
    assert x9001.kind is GroupKind.CLASS
    assert x9001.sections == ("X9001s1", "X9001s2")
    assert list(groups.members("X9001s2")) == [Membership("X9001s2", students[1], Role.STUDENT)]
    assert reaches.exit_code == 0, reaches.output
    for username in students[:2]:
        assert program.user(username).email in reaches.output
    assert program.user(students[2]).email not in reaches.output


def test_groups_json_carries_members_and_reports_a_bad_member_by_its_group_line(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_text(
        json.dumps(
            [
                {"code": "Club1", "title": "Chess club", "members": [{"username": "kim", "role": "admin"}]},
                {
                    "code": "Club2",
                    "kind": "group",
                    "members": [{"username": "lee", "role": "boss"}, {"username": "jo", "role": "student"}],
                },
                {"code": "Club3", "members": "everyone"},
            ],
            indent=1,
        )
    )

    result = run(stack, "groups", "import", str(path))

    assert result.exit_code == 1
    assert "groups.json: line 12: Club2 members[0]: role 'boss' is not one of" in result.stderr
    assert "members must be a list" in result.stderr
    assert "imported 2 groups and 2 memberships" in result.output
    groups = GroupRepository()
    assert groups.get("Club1") is not None
    assert groups.get("Club3") is None
    assert [m.username for m in groups.members("Club2")] == ["jo"]


def test_users_import_refuses_addresses_sendgrid_would_not_take(stack: Any, tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_text(
        "username,user_id,email,guardian_email\n"
        "double_dot,1,a..b@students.example.net,\n"
        "trailing_dot,2,trailing.@students.example.net,\n"
        "accented,3,josé@students.example.net,\n"
        "bad_guardian,4,ok4@students.example.net,parent.@family.example.org\n"
        "fine,5,o'neil.fine+tag@students.example.net,\n",
        encoding="utf-8",
    )

    result = run(stack, "users", "import", str(path))

    assert_one_line_error(result, 1, "4 rows of", "(lines 2, 3, 4, 5)")
    assert "users.csv: line 2: email 'a..b@students.example.net' is not an email address" in result.stderr
    assert "users.csv: line 3: email 'trailing.@students.example.net' is not an email address" in result.stderr
    assert "users.csv: line 4: email 'josé@students.example.net' is not an email address" in result.stderr
    assert "users.csv: line 5: guardian_email 'parent.@family.example.org' is not an email address" in result.stderr
    assert "imported 1 user into" in result.output
    assert UserRepository().get("fine") is not None
    assert UserRepository().get("accented") is None
