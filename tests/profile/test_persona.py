"""The persona scanner: seniority and department from a user's title, kept by the newest title, in rules and sent.

The titles and what they must give are written here by hand (none is read from the patterns file);
the processing tests run on SQLite and PostgreSQL.
"""

import asyncio

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connector.cli import main
from connector.core.db import create_engine
from connector.core.environment import get_environment
from connector.core.models import User, utcnow
from connector.profile.persona import RULES, normalise, persona_of, scan
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.fake_segment import configure, send_all

users = User.__table__

# title -> (seniority, department); None is absent. Ambiguous titles are settled as the comment says.
TITLES = {
    # the examples
    "VP of Happiness": ("vp", "customer_success"),
    "Head of Growth": ("director", "marketing"),
    "Sr. Software Engineer": ("senior", "engineering"),
    "CEO & Co-founder": ("owner", "executive"),  # a founder ranks as owner, above the C-level title
    "Directeur commercial": ("director", "sales"),
    # owners and chiefs
    "Founder": ("owner", "executive"),
    "Co-Founder & CTO": ("owner", "engineering"),  # the CTO's department says more than "founder"
    "Owner": ("owner", "executive"),
    "Managing Partner": ("owner", "executive"),
    "Chief Executive Officer": ("c_level", "executive"),
    "CFO": ("c_level", "finance"),
    "Chief Marketing Officer": ("c_level", "marketing"),
    "Chief Revenue Officer": ("c_level", "sales"),
    "COO": ("c_level", "operations"),
    "CISO": ("c_level", "it"),
    "Chief Happiness Officer": ("c_level", "customer_success"),
    "President & CEO": ("c_level", "executive"),
    "Managing Director": ("c_level", "executive"),
    "CSO": ("c_level", None),  # security, sales or strategy: no department
    # vice presidents
    "Vice President": ("vp", None),  # no department named
    "Senior Vice President, Sales": ("vp", "sales"),
    "SVP Engineering": ("vp", "engineering"),
    "VP, People": ("vp", "hr"),
    "EVP Finance & Operations": ("vp", "finance"),  # the first department named in the patterns' order
    # directors and heads
    "Director of Engineering": ("director", "engineering"),
    "Associate Director, Marketing": ("director", "marketing"),
    "Head of Product": ("director", "product"),
    "Head of IT": ("director", "it"),
    "Chief of Staff": ("director", "executive"),  # a chief, not a C-level
    "Executive Director": ("director", "executive"),
    "Art Director": ("director", "design"),
    "Director, Legal Affairs": ("director", "legal"),
    # managers
    "Engineering Manager": ("manager", "engineering"),
    "Senior Product Manager": ("manager", "product"),  # manager outranks senior
    "Customer Success Manager": ("manager", "customer_success"),
    "Office Manager": ("manager", "operations"),
    "IT Manager": ("manager", "it"),
    "Assistant Manager": ("manager", None),
    "Team Lead, Support": ("manager", "support"),
    "Account Manager": ("manager", "sales"),
    "Talent Acquisition Manager": ("manager", "hr"),
    # seniors and individual contributors
    "Principal Engineer": ("senior", "engineering"),
    "Staff Software Engineer": ("senior", "engineering"),
    "Lead Designer": ("senior", "design"),
    "Senior Accountant": ("senior", "finance"),
    "Senior Account Executive": ("senior", "sales"),
    "Software Engineer": (None, "engineering"),
    "Account Executive": (None, "sales"),
    "Sales Engineer": (None, "sales"),  # sells: a sales role before an engineering one
    "Technical Support Engineer": (None, "support"),
    "Product Designer": (None, "design"),
    "Product Marketing Manager": ("manager", "marketing"),
    "Product Owner": (None, "product"),  # owns a backlog, not a company
    "Product Engineer": (None, "engineering"),
    "Data Scientist": (None, "engineering"),
    "Recruiter": (None, "hr"),
    "General Counsel": (None, "legal"),
    "Paralegal": (None, "legal"),
    "Controller": (None, "finance"),
    "Systems Administrator": (None, "it"),
    "DevOps Engineer": (None, "engineering"),
    "Content Strategist": (None, "marketing"),
    "UX Researcher": (None, "design"),
    # entry level
    "Junior Developer": ("entry", "engineering"),
    "Jr. Frontend Developer": ("entry", "engineering"),
    "Marketing Intern": ("entry", "marketing"),
    "Executive Assistant to the CEO": ("entry", "operations"),  # an assistant, whoever the boss
    "Associate Product Manager": ("entry", "product"),
    "Sales Development Representative (SDR)": (None, "sales"),
    # French
    "Président Directeur Général": ("c_level", "executive"),
    "Fondateur et PDG": ("owner", "executive"),
    "Directrice marketing": ("director", "marketing"),
    "Responsable des ventes": ("manager", "sales"),
    "Ingénieur logiciel": (None, "engineering"),
    "Développeuse full-stack": (None, "engineering"),
    "Chef de produit": ("manager", "product"),
    "Comptable": (None, "finance"),
    "Stagiaire communication": ("entry", "marketing"),
    "Chargée de relation client": (None, "support"),
    # German
    "Geschäftsführer": ("c_level", "executive"),
    "Leiter Vertrieb": ("director", "sales"),
    "Vertriebsleiterin": ("director", "sales"),
    "Senior Softwareentwicklerin": ("senior", "engineering"),
    "Teamleiter Kundenservice": ("manager", "support"),
    "Werkstudent Marketing": ("entry", "marketing"),
    "Buchhalterin": (None, "finance"),
    # Spanish
    "Director de Ventas": ("director", "sales"),
    "Gerente de Marketing": ("manager", "marketing"),
    "Gerente General": ("c_level", "executive"),
    "Jefe de Producto": ("manager", "product"),
    "Ingeniera de Software": (None, "engineering"),
    "Fundador y CEO": ("owner", "executive"),
    "Abogada": (None, "legal"),
    "Becario de Recursos Humanos": ("entry", "hr"),
    # nothing to read
    "Wizard": (None, None),
    "": (None, None),
    "---": (None, None),
    "Internal Auditor": (None, "finance"),  # "internal" is not "intern"
}


@pytest.mark.parametrize(("title", "expected"), TITLES.items())
def test_a_title_gives_the_seniority_and_department_written_beside_it(title, expected):
    assert scan(title) == expected


def test_the_table_holds_at_least_sixty_titles():
    assert len(TITLES) >= 60


@pytest.mark.parametrize(
    ("title", "same_as"),
    [
        ("SR SOFTWARE ENGINEER", "Sr. Software Engineer"),
        ("sr.software-engineer", "Sr. Software Engineer"),
        ("  vp   of   happiness!! ", "VP of Happiness"),
        ("DIRECTEUR COMMERCIAL", "Directeur commercial"),
        ("directeur   commercial.", "Directeur commercial"),
        ("ceo/co-founder", "CEO & Co-founder"),
        ("Geschaftsfuhrer", "Geschäftsführer"),
        ("président-directeur-général", "Président Directeur Général"),
    ],
)
def test_case_punctuation_spacing_and_accents_do_not_matter(title, same_as):
    assert scan(title) == scan(same_as) != (None, None)


def test_a_title_is_read_lower_case_without_accents_and_punctuation():
    assert normalise("  Sr. Software-Engineer (Café) ") == "sr software engineer cafe"
    assert normalise("CEO & Co_founder") == "ceo co founder"


# One example per family of rules in the patterns file, with what that family must give.
FAMILY_EXAMPLES = {
    ("seniority", "not a rank"): ("Process Owner", None),
    ("seniority", "assistants and interns"): ("Praktikantin Vertrieb", "entry"),
    ("seniority", "owners and founders"): ("Inhaber", "owner"),
    ("seniority", "chief of staff"): ("Chief of Staff to the CEO", "director"),
    ("seniority", "vice presidents"): ("Vizepräsident Marketing", "vp"),
    ("seniority", "chiefs and presidents"): ("Chief Data Officer", "c_level"),
    ("seniority", "vice presidents (short forms)"): ("AVP Operations", "vp"),
    ("seniority", "team leads"): ("Jefe de equipo", "manager"),
    ("seniority", "directors and heads"): ("Direktorin Finanzen", "director"),
    ("seniority", "managers"): ("Supervisor", "manager"),
    ("seniority", "seniors"): ("Expert SEO", "senior"),
    ("seniority", "entry level"): ("Marketing Coordinator", "entry"),
    ("department", "assistants and office"): ("Personal Assistant", "operations"),
    ("department", "customer success"): ("CSM", "customer_success"),
    ("department", "information technology"): ("Informatik Administrator", "it"),
    ("department", "support"): ("Help Desk Agent", "support"),
    ("department", "sales"): ("Partnerships Lead", "sales"),
    ("department", "people and hiring"): ("HRBP", "hr"),
    ("department", "design"): ("Graphiste", "design"),
    ("department", "marketing"): ("Brand Strategist", "marketing"),
    ("department", "finance"): ("Payroll Specialist", "finance"),
    ("department", "legal"): ("Compliance Officer", "legal"),
    ("department", "engineers who build the product"): ("Product Engineering Lead", "engineering"),
    ("department", "product"): ("Produktmanager", "product"),
    ("department", "engineering"): ("Programador", "engineering"),
    ("department", "operations"): ("Supply Chain Analyst", "operations"),
    ("department", "a vice president of nothing in particular"): ("Vice Presidente", None),
    ("department", "executive"): ("Chairman of the Board", "executive"),
}


@pytest.mark.parametrize(("family", "example"), FAMILY_EXAMPLES.items(), ids=lambda value: str(value))
def test_each_family_of_patterns_gives_its_value(family, example):
    attribute, _ = family
    title, expected = example
    seniority, department = scan(title)
    assert (seniority if attribute == "seniority" else department) == expected


def test_every_family_in_the_patterns_file_has_an_example_here():
    assert {(rule.attribute, rule.family) for rule in RULES} == set(FAMILY_EXAMPLES)


def test_the_newest_of_the_title_traits_is_read_and_ties_go_to_title():
    traits = {"title": "Intern", "job_title": "CFO", "jobTitle": "Software Engineer"}
    assert persona_of(traits, {"title": "2024-01-01", "job_title": "2024-03-01", "jobTitle": "2024-02-01"}) == (
        "c_level",
        "finance",
    )
    assert persona_of(traits, dict.fromkeys(traits, "2024-01-01")) == ("entry", None)
    assert persona_of({"title": "", "jobTitle": "CFO"}, {"title": "2025-01-01", "jobTitle": "2024-01-01"}) == (
        "c_level",
        "finance",
    )
    assert persona_of({"title": 42, "name": "CEO"}, {}) == (None, None)


# --- processing, segments, outbound: SQLite and PostgreSQL ----------------------------------------


async def identify(client, user_id, at, **traits):
    response = await client.post(
        "/v1/identify", headers=basic_auth(), json={"userId": user_id, "timestamp": at, "traits": traits}
    )
    assert response.status_code == 200, response.text


async def persona_in_api(client, user_id):
    response = await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()["persona"]


async def test_an_identify_stores_the_persona_and_the_profile_api_shows_it(client, runtime):
    await identify(client, "ada", "2024-05-01T10:00:00Z", title="VP of Happiness")
    await identify(client, "bob", "2024-05-01T10:00:00Z", email="bob@example.com")
    await drain(runtime)
    assert await persona_in_api(client, "ada") == {"seniority": "vp", "department": "customer_success"}
    assert await persona_in_api(client, "bob") == {"seniority": None, "department": None}


async def test_a_late_older_title_leaves_the_persona_of_the_newer_one(client, runtime):
    await identify(client, "ada", "2024-05-02T10:00:00Z", title="CFO")
    await drain(runtime)
    await identify(client, "ada", "2024-05-01T10:00:00Z", title="Marketing Intern")
    await drain(runtime)
    assert await persona_in_api(client, "ada") == {"seniority": "c_level", "department": "finance"}
    await identify(client, "ada", "2024-05-03T10:00:00Z", jobTitle="Marketing Intern")
    await drain(runtime)
    assert await persona_in_api(client, "ada") == {"seniority": "entry", "department": "marketing"}


async def test_a_new_title_replaces_the_persona_and_one_matching_nothing_clears_it(client, runtime):
    await identify(client, "ada", "2024-05-01T10:00:00Z", title="Head of Growth")
    await drain(runtime)
    await identify(client, "ada", "2024-05-02T10:00:00Z", title="Wizard")
    await drain(runtime)
    assert await persona_in_api(client, "ada") == {"seniority": None, "department": None}


async def test_a_merge_reads_the_persona_from_the_newest_title_of_both_profiles(client, runtime):
    await client.post(
        "/v1/identify",
        headers=basic_auth(),
        json={
            "anonymousId": "anon-1",
            "timestamp": "2024-05-02T10:00:00Z",
            "traits": {"title": "Sr. Software Engineer"},
        },
    )
    await identify(client, "ada", "2024-05-01T10:00:00Z", title="Intern")
    await drain(runtime)
    await client.post(
        "/v1/alias", headers=basic_auth(), json={"userId": "ada", "previousId": "anon-1", "timestamp": "2024-05-03"}
    )
    await drain(runtime)
    assert await persona_in_api(client, "ada") == {"seniority": "senior", "department": "engineering"}


async def test_segments_select_users_by_seniority_and_department(client, runtime):
    titles = {"ada": "VP Engineering", "bob": "Software Engineer", "cy": "VP Sales", "dee": "Florist"}
    for user_id, title in titles.items():
        await identify(client, user_id, "2024-05-01T10:00:00Z", title=title)
    for name, rule in {
        "VPs": {"attribute": "persona.seniority", "op": "eq", "value": "vp"},
        "Engineers": {"attribute": "persona.department", "op": "in", "value": ["engineering", "it"]},
        "No department": {"attribute": "persona.department", "op": "not_exists"},
    }.items():
        response = await client.post(
            "/api/segments", headers=admin_auth(), json={"name": name, "entity": "user", "rule": rule}
        )
        assert response.status_code in (200, 201), response.text
    await drain(runtime)
    members = {}
    for user_id in titles:
        response = await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())
        members[user_id] = set(response.json()["segments"])
    assert members == {"ada": {"VPs", "Engineers"}, "bob": {"Engineers"}, "cy": {"VPs"}, "dee": {"No department"}}
    # a title change moves the user between segments as it is processed
    await identify(client, "bob", "2024-05-02T10:00:00Z", title="VP of Engineering")
    await drain(runtime)
    response = await client.get("/api/users", params={"user_id": "bob"}, headers=admin_auth())
    assert set(response.json()["segments"]) == {"VPs", "Engineers"}


async def test_an_identify_whose_title_changes_resends_the_synchronized_persona_once(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_properties=["email", "persona.seniority", "persona.department"],
    )
    await identify(client, "ada", "2024-05-01T10:00:00Z", email="ada@example.com", title="Software Engineer")
    await drain(runtime)
    await send_all(runtime)
    first = [m for m in segment_api.messages if m["type"] == "identify"]
    assert [m["traits"] for m in first] == [
        {"email": "ada@example.com", "persona_department": "engineering", "hull_segments": []}
    ]
    await identify(client, "ada", "2024-05-02T10:00:00Z", title="Head of Engineering")
    await drain(runtime)
    await send_all(runtime)
    # the same title again, and another trait not synchronized: nothing new to send
    await identify(client, "ada", "2024-05-03T10:00:00Z", title="Head of Engineering", plan="pro")
    await drain(runtime)
    await send_all(runtime)
    identifies = [m for m in segment_api.messages if m["type"] == "identify"]
    assert [m["traits"] for m in identifies[1:]] == [
        {
            "email": "ada@example.com",
            "persona_seniority": "director",
            "persona_department": "engineering",
            "hull_segments": [],
        }
    ]


def test_cli_rebuild_reads_every_persona_again_and_shows_progress(database_url, monkeypatch):
    """Personas stored before a change of the patterns (here: blanked or wrong) are read again from the title."""

    async def prepare():
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            await conn.execute(
                users.insert(),
                [
                    {
                        "traits": {"title": title},
                        "trait_timestamps": {"title": "2024-05-01T10:00:00.000Z"},
                        "persona_seniority": stored[0],
                        "persona_department": stored[1],
                        "created_at": utcnow(),
                        "updated_at": utcnow(),
                    }
                    for title, stored in [
                        ("VP of Happiness", (None, None)),
                        ("Directeur commercial", ("entry", "legal")),
                        ("Sr. Software Engineer", ("senior", "engineering")),
                        ("Wizard", ("owner", None)),
                    ]
                ],
            )
        await engine.dispose()

    async def stored():
        engine = create_engine(database_url)
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(users.c.traits, users.c.persona_seniority, users.c.persona_department).order_by(users.c.id)
            )
            found = {row.traits["title"]: (row.persona_seniority, row.persona_department) for row in rows}
        await engine.dispose()
        return found

    asyncio.run(prepare())
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ADMIN_TOKEN", "x")
    get_environment.cache_clear()
    try:
        result = CliRunner().invoke(main, ["persona", "rebuild"])
    finally:
        get_environment.cache_clear()
    assert result.exit_code == 0, result.output
    assert "personas rebuilt: 3 changed" in result.output
    assert "4/4" in result.output  # tqdm's bar, on stderr, which click's runner mixes in
    assert asyncio.run(stored()) == {
        "VP of Happiness": ("vp", "customer_success"),
        "Directeur commercial": ("director", "sales"),
        "Sr. Software Engineer": ("senior", "engineering"),
        "Wizard": (None, None),
    }


async def test_a_rebuild_queues_the_users_whose_persona_changed_for_sending(runtime):
    from connector.service.use_cases import rescan_personas

    async with runtime.engine.begin() as conn:
        stale, _up_to_date = [
            await conn.scalar(
                users.insert()
                .values(
                    traits={"title": "CFO"}, trait_timestamps={}, created_at=utcnow(), updated_at=utcnow(), **stored
                )
                .returning(users.c.id)
            )
            for stored in ({}, {"persona_seniority": "c_level", "persona_department": "finance"})
        ]
    assert await rescan_personas(runtime.engine, await runtime.settings.current()) == 1
    async with runtime.engine.connect() as conn:
        keys = set((await conn.execute(sa.text("SELECT key FROM outbox"))).scalars())
    assert keys == {f"user:{stale}"}
