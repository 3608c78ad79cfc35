"""The verbs cards carry and the typed data of each: the card builders put them on buttons,
the bot's handlers read them back with the same models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from services.domain import CallerIdMode

# Ids are the database's 32-bit integers: anything larger is no row of ours, and must never
# reach the database (PostgreSQL refuses it; SQLite refuses beyond 64 bits).
MAX_ID = 2**31 - 1
RowId = Annotated[int, Field(gt=0, le=MAX_ID)]
# Pages beyond this are no page of anything: a larger number reads as "beyond the last page"
# (a card shows the last one, or says there is no such page), never as a huge offset.
MAX_PAGE = 1_000_000
Page = Annotated[int, AfterValidator(lambda page: max(-MAX_PAGE - 1, min(page, MAX_PAGE + 1)))]
# No input of any card needs more: longer text is not something an admin typed into it.
MAX_TEXT = 4000


class Verb(StrEnum):
    """Every action a card can send; the bot registers one handler per verb."""

    HOME = "home"
    COMMAND_UNKNOWN = "command.unknown"
    ENTERPRISE_PICK = "enterprise.pick"
    USER_CREATE_OPEN = "user.create.open"
    USER_CREATE_SUBMIT = "user.create.submit"
    USER_FIND = "user.find"
    USER_OPEN = "user.open"
    USER_EDIT_SUBMIT = "user.edit.submit"
    USER_REMOVE = "user.remove"
    NUMBERS_OPEN = "numbers.open"
    NUMBER_AUTO = "numbers.auto"
    NUMBER_ASSIGN = "numbers.assign"
    NUMBER_RELEASE = "numbers.release"
    EXTENSIONS_OPEN = "extensions.open"
    CALLER_ID_OPEN = "callerid.open"
    CALLER_ID_SUBMIT = "callerid.submit"
    DIRECTORY_OPEN = "directory.open"
    UNLICENSED_OPEN = "unlicensed.open"
    UNLICENSED_ENABLE = "unlicensed.enable"
    SYNC_OPEN = "sync.open"
    SYNC_START = "sync.start"
    SYNC_CONSENT = "sync.consent"
    SYNC_REFRESH = "sync.refresh"
    USER_REFRESH = "user.refresh"
    TELEPHONY_OPEN = "telephony.open"
    HUNT_GROUPS_SAVE = "huntgroups.save"
    HUNT_GROUP_CREATE = "huntgroups.create"
    DESK_PHONE_ISSUE = "deskphone.issue"
    DESK_PHONE_REVOKE = "deskphone.revoke"
    BULK_EXPORT = "bulk.export"
    BULK_IMPORT_OPEN = "bulk.import.open"
    BULK_PREVIEW = "bulk.preview"
    BULK_PREVIEW_FILE = "bulk.preview.file"
    BULK_UPLOAD = "bulk.upload"
    BULK_APPLY = "bulk.apply"
    BULK_PROGRESS = "bulk.progress"
    BULK_RESULT_FILE = "bulk.result.file"
    BULK_FILE_CONSENT = "bulk.file.consent"


class Dataset(StrEnum):
    """Type-ahead datasets served by the bot's search handler."""

    FREE_NUMBERS = "numbers.free"
    OWNED_NUMBERS = "numbers.owned"
    USERS = "users"


def database_id(text: str) -> int | None:
    """`text` as a row id, if it is the digits of one the database can hold."""
    text = text.strip()
    if not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    number = int(text)
    return number if 0 < number <= MAX_ID else None


# The error type of a value outside a closed choice (a mode, a product, a multi-select): its
# message says what to choose, and the router shows it next to that field of the form again.
CHOICE_ERROR = "choice"

# More choices than any multi-select of ours offers: such a value is no selection of ours.
MAX_CHOICES = 10_000


def choice(values: Any, message: str, *, blank: str | None = None) -> BeforeValidator:
    """A closed choice among `values` (the values of an enum, or strings): anything else is
    refused with `message`, which says what to choose. A choice left empty reads as `blank`
    when given (else it is refused too); case and surrounding spaces do not matter."""
    allowed = frozenset(str(getattr(value, "value", value)) for value in values)

    def read(value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip().lower()
            if not text and blank is not None:
                text = blank
            if text in allowed:
                return text
        raise PydanticCustomError(CHOICE_ERROR, message)

    return BeforeValidator(read)


def read_ids(value: Any, message: str) -> list[int]:
    """The row ids a multi-select's value names: Teams sends them as text ("12,15"); a list of
    ids (a card builder's own value) reads the same. Anything else is refused with `message`."""
    if value is None:
        return []
    if isinstance(value, str):
        parts: list[Any] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        raise PydanticCustomError(CHOICE_ERROR, message)
    if len(parts) > MAX_CHOICES:
        raise PydanticCustomError(CHOICE_ERROR, message)
    ids = []
    for part in parts:
        row_id = (
            part
            if isinstance(part, int) and not isinstance(part, bool) and 0 < part <= MAX_ID
            else database_id(part)
            if isinstance(part, str)
            else None
        )
        if row_id is None:
            raise PydanticCustomError(CHOICE_ERROR, message)
        ids.append(row_id)
    return ids


# A multi-select's value on a card: the ids, comma-separated.
_IDS_ON_CARD = PlainSerializer(lambda ids: ",".join(str(i) for i in ids), return_type=str)


# How a form gives a direct number or an extension: the next free one, the one picked, none
# (numbers only), or the one the user has (a choice left empty keeps it).
NUMBER_MODES = ("auto", "pick", "none", "keep")
EXTENSION_MODES = ("auto", "pick", "keep")
NumberMode = Annotated[
    Literal["auto", "pick", "none", "keep"],
    choice(
        NUMBER_MODES,
        "Choose how to give the direct number: the next free one, one you pick, or none.",
        blank="keep",
    ),
]
ExtensionMode = Annotated[
    Literal["auto", "pick", "keep"],
    choice(
        EXTENSION_MODES,
        "Choose how to give the extension: the next free one, or one you pick.",
        blank="keep",
    ),
]
# A calling licence on the user forms: a product, "none", or (edit only) empty to keep it.
UserLicence = Annotated[
    Literal["essentials", "basic", "none", ""],
    choice(
        ("essentials", "basic", "none", ""),
        "Choose the calling licence: Essentials, Basic or no licence.",
    ),
]
# The product to enable users with.
EnableLicence = Annotated[
    Literal["essentials", "basic"],
    choice(("essentials", "basic"), "Choose Essentials or Basic."),
]
# Which number a user presents on outgoing calls.
CallerIdChoice = Annotated[
    CallerIdMode,
    choice(
        CallerIdMode,
        "Choose which number to present: own, company main, another or anonymous.",
    ),
]
# Multi-selects of rows: a list of ids on both sides, text ("12,15") on the card.
GroupSelection = Annotated[
    list[int],
    BeforeValidator(
        lambda value: read_ids(
            value, "Switchboard could not read that selection. Tick the groups again."
        )
    ),
    _IDS_ON_CARD,
]
UserSelection = Annotated[
    list[int],
    BeforeValidator(
        lambda value: read_ids(
            value, "Switchboard could not read that selection. Select the users again."
        )
    ),
    _IDS_ON_CARD,
]


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


class ActionData(BaseModel):
    """What every action carries: its verb and, for provider admins, the enterprise acted for.

    Inputs of the card arrive merged into the same object, under their ids.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, str_max_length=MAX_TEXT)
    verb: ClassVar[Verb] = Verb.HOME
    # Whether the action changes anything: only those are guarded against duplicate delivery.
    changes_state: ClassVar[bool] = False
    ent: RowId | None = None

    def payload(self) -> dict[str, Any]:
        """The data to put on a button: the verb and the non-empty fields."""
        return {"verb": self.verb.value, **self.model_dump(exclude_none=True)}

    @field_validator("ent", mode="before")
    @classmethod
    def _ent(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # No admin types a NUL, and PostgreSQL cannot store one.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("contains a NUL character")
        return value


class Home(ActionData):
    """Open the home card."""

    verb: ClassVar[Verb] = Verb.HOME


class UnknownCommand(ActionData):
    """A typed message that is no command: what was typed, to suggest the closest commands."""

    verb: ClassVar[Verb] = Verb.COMMAND_UNKNOWN
    text: str = ""


class PickEnterprise(ActionData):
    """A provider admin chooses the enterprise to act for (input `ent`)."""

    verb: ClassVar[Verb] = Verb.ENTERPRISE_PICK


class OpenCreateUser(ActionData):
    """Open an empty create-user form."""

    verb: ClassVar[Verb] = Verb.USER_CREATE_OPEN


class CreateUserForm(ActionData):
    """The create-user form's inputs."""

    verb: ClassVar[Verb] = Verb.USER_CREATE_SUBMIT
    changes_state: ClassVar[bool] = True
    display_name: str = ""
    email: str = ""
    licence: UserLicence = "essentials"
    number_mode: NumberMode = "auto"
    number: str = ""
    number_digits: str = ""
    extension_mode: ExtensionMode = "auto"
    extension: str = ""
    send_password_email: bool = False
    # Where the password e-mail goes; empty: to the new user's own address.
    password_email_to: str = ""
    notify_user: bool = False


class FindUser(ActionData):
    """Search users by name, e-mail, number or extension (input `query`); `then` says what a
    match opens: the user card, or the user's caller ID (typed `caller id priya`)."""

    verb: ClassVar[Verb] = Verb.USER_FIND
    query: str = ""
    page: Page = 1
    then: Annotated[
        Literal["user", "callerid"],
        choice(("user", "callerid"), "Search again from the Find user card.", blank="user"),
    ] = "user"


class UserRef(ActionData):
    """Open one user's card."""

    verb: ClassVar[Verb] = Verb.USER_OPEN
    user_id: RowId


class RefreshUser(ActionData):
    """Teams asks for a user's card as it is now (the card's `refresh`, run when it is shown)."""

    verb: ClassVar[Verb] = Verb.USER_REFRESH
    user_id: RowId


class OpenPickedUser(ActionData):
    """Open the user chosen in the card's `user_id` picker (the id comes from the input)."""

    verb: ClassVar[Verb] = Verb.USER_OPEN


class EditUserForm(ActionData):
    """The edit form's inputs, with the version of the user the admin saw."""

    verb: ClassVar[Verb] = Verb.USER_EDIT_SUBMIT
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    display_name: str = ""
    email: str = ""
    licence: UserLicence = ""
    number_mode: NumberMode = "keep"
    number: str = ""
    number_digits: str = ""
    extension_mode: ExtensionMode = "keep"
    extension: str = ""
    send_password_email: bool = False
    notify_user: bool = False
    # Set by the confirmation card: the admin has read what cannot be undone and goes ahead.
    confirmed: bool = False


class RemoveUser(ActionData):
    """Remove (offboard) a user; `confirmed` once the admin has read what will happen."""

    verb: ClassVar[Verb] = Verb.USER_REMOVE
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    confirmed: bool = False


class OpenNumbers(ActionData):
    """The free-number picker, optionally for one user, filtered by digits (input `digits`)."""

    verb: ClassVar[Verb] = Verb.NUMBERS_OPEN
    user_id: RowId | None = None
    digits: str = ""
    page: Page = 1
    # Pressed "Choose this user": a user must have been picked.
    choose: bool = False

    @field_validator("user_id", mode="before")
    @classmethod
    def _user_id(cls, value: Any) -> Any:
        # An empty user picker arrives as "": the card is then for no one in particular.
        return _blank_to_none(value)


class AutoAssignNumber(ActionData):
    """Give the user the next free number."""

    verb: ClassVar[Verb] = Verb.NUMBER_AUTO
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    confirmed: bool = False


class AssignNumber(ActionData):
    """Give the user the chosen free number (input `number`, or `digits` to look one up)."""

    verb: ClassVar[Verb] = Verb.NUMBER_ASSIGN
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    number: str = ""
    digits: str = ""
    confirmed: bool = False


class ReleaseNumber(ActionData):
    """Take the user's number back into quarantine."""

    verb: ClassVar[Verb] = Verb.NUMBER_RELEASE
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    confirmed: bool = False


class OpenExtensions(ActionData):
    """The free extensions of the enterprise."""

    verb: ClassVar[Verb] = Verb.EXTENSIONS_OPEN


class OpenCallerId(ActionData):
    """Open a user's caller ID card."""

    verb: ClassVar[Verb] = Verb.CALLER_ID_OPEN
    user_id: RowId


class CallerIdForm(ActionData):
    """The caller ID card's inputs."""

    verb: ClassVar[Verb] = Verb.CALLER_ID_SUBMIT
    changes_state: ClassVar[bool] = True
    user_id: RowId
    version: RowId
    mode: CallerIdChoice = CallerIdMode.OWN_DDI
    number_digits: str = ""
    caller_name: str = ""
    send_pai: bool = False
    pai_digits: str = ""


class OpenDirectory(ActionData):
    """One page of the directory, sorted by a column."""

    verb: ClassVar[Verb] = Verb.DIRECTORY_OPEN
    sort: str = "name"
    desc: bool = False
    page: Page = 1
    query: str = ""


class OpenUnlicensed(ActionData):
    """The users without a calling licence; `select_all` ticks every listed user."""

    verb: ClassVar[Verb] = Verb.UNLICENSED_OPEN
    select_all: bool = False


class EnableUsersForm(ActionData):
    """Users picked on the unlicensed list (input `users`) and a product."""

    verb: ClassVar[Verb] = Verb.UNLICENSED_ENABLE
    changes_state: ClassVar[bool] = True
    users: UserSelection = []
    licence: EnableLicence = "essentials"
    confirmed: bool = False


class OpenSync(ActionData):
    """The sync status card."""

    verb: ClassVar[Verb] = Verb.SYNC_OPEN


class StartSync(ActionData):
    """Press "Sync Teams Users"."""

    verb: ClassVar[Verb] = Verb.SYNC_START
    changes_state: ClassVar[bool] = True


class RefreshSync(ActionData):
    """Teams asks for the sync card as it is now (the card's `refresh`, run when it is shown)."""

    verb: ClassVar[Verb] = Verb.SYNC_REFRESH


class SetConsent(ActionData):
    """The Global Admin grants or withdraws "Allow Management by Service Provider"."""

    verb: ClassVar[Verb] = Verb.SYNC_CONSENT
    changes_state: ClassVar[bool] = True
    consent: bool


class OpenTelephony(ActionData):
    """Open a user's hunt groups and desk phone card."""

    verb: ClassVar[Verb] = Verb.TELEPHONY_OPEN
    user_id: RowId


class TelephonyInputs(ActionData):
    """What every button of the hunt groups and desk phone card sends: the user, and the card's
    inputs as the admin left them (`groups`: the ticked groups; `new_group`: the name box), so a
    refused action shows them again."""

    changes_state: ClassVar[bool] = True
    user_id: RowId
    groups: GroupSelection = []
    new_group: str = ""
    # Where callers reach a new group: an extension and a direct number, both optional.
    new_group_extension: str = ""
    new_group_number: str = ""


class SaveHuntGroups(TelephonyInputs):
    """Make the user a member of exactly the ticked hunt groups."""

    verb: ClassVar[Verb] = Verb.HUNT_GROUPS_SAVE


class CreateHuntGroup(TelephonyInputs):
    """Create a hunt group named by the `new_group` box."""

    verb: ClassVar[Verb] = Verb.HUNT_GROUP_CREATE


class IssueDeskPhone(TelephonyInputs):
    """Issue the user a desk phone login; `replace` says the admin knows one exists already."""

    verb: ClassVar[Verb] = Verb.DESK_PHONE_ISSUE
    replace: bool = False


class RevokeDeskPhone(TelephonyInputs):
    """Take the user's desk phone login away."""

    verb: ClassVar[Verb] = Verb.DESK_PHONE_REVOKE


# The paste box of the import card: about 120 rows of a typical export, so the preview card
# that keeps the pasted text stays within what Teams shows (about 28 KB). Larger files are
# attached in the personal chat instead (up to 5 MB).
MAX_PASTE = 12_000


class ExportDirectory(ActionData):
    """Send the directory as a spreadsheet (`template`: the blank template instead)."""

    verb: ClassVar[Verb] = Verb.BULK_EXPORT
    template: bool = False


class OpenImport(ActionData):
    """Open the import card: the paste box, and how to attach a file."""

    verb: ClassVar[Verb] = Verb.BULK_IMPORT_OPEN


class PastedSheet(ActionData):
    """The import card's paste box (input `sheet`): a CSV pasted as text."""

    # Longer than the box takes, so a paste beyond it is told so, not read as garbage.
    model_config = ConfigDict(str_max_length=20 * MAX_PASTE)
    sheet: str = ""


class PreviewPasted(PastedSheet):
    """Preview what the pasted sheet would change."""

    verb: ClassVar[Verb] = Verb.BULK_PREVIEW


class PreviewFile(PastedSheet):
    """Send the whole preview as a file: of the pasted sheet, or of the uploaded file `upload`."""

    verb: ClassVar[Verb] = Verb.BULK_PREVIEW_FILE
    upload: str = ""


class UploadedSheet(ActionData):
    """A file attached in the chat (Teams' file download info): where to fetch it."""

    verb: ClassVar[Verb] = Verb.BULK_UPLOAD
    url: str = ""
    name: str = ""
    file_type: str = ""


class ApplyImport(PastedSheet):
    """Apply the preview named by `token`: of the pasted sheet, or of the uploaded file kept
    under `upload`."""

    verb: ClassVar[Verb] = Verb.BULK_APPLY
    changes_state: ClassVar[bool] = True
    token: str = ""
    upload: str = ""
    file_name: str = ""


class ImportRef(ActionData):
    """Show how far an import has got, or its result."""

    verb: ClassVar[Verb] = Verb.BULK_PROGRESS
    import_id: RowId


class ImportResultFile(ActionData):
    """Send an import's result (each row, applied or failed and why) as a file."""

    verb: ClassVar[Verb] = Verb.BULK_RESULT_FILE
    import_id: RowId


class FileConsentAnswer(ActionData):
    """The admin's answer on a file consent card: `accept` or `decline`, what the card was
    for (`file`, kept by the bot), and where Teams lets the bot upload it."""

    verb: ClassVar[Verb] = Verb.BULK_FILE_CONSENT
    action: str = ""
    file: str = ""
    upload_url: str = ""
    content_url: str = ""
    unique_id: str = ""
    name: str = ""
    file_type: str = ""
