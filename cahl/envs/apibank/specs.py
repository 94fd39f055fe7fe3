"""The API-Bank APIs' interface: descriptions, typed parameters, and argument checking.

`API_SPECS` holds each API in API-Bank's own notation (`{"description", "input_parameters":
{name: {"type", "description"}}, "output_parameters": ...}`) because that is what ToolSearcher
returns to the model. The texts are the ones the benchmark shows: ToolSearcher's recorded
outputs where an API appears there (level-2), else the level-1 prompt's descriptions.
`API_SCHEMAS` is the same set in the OpenAI function format that the rest of cahl uses.

API-Bank calls arrive as text (`Name(k='v')`), so every value is a string there; the original
tool manager converts a string to the declared type (`'2'` -> 2, `'True'` -> True,
`"['a']"` -> ['a']). `check_arguments` does the same conversions and nothing looser: a value
that is neither of the declared type nor a string that converts cleanly is an error.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from typing import Any

from cahl.types import CahlInputError, ToolSpec

MAX_STRING_CHARS = 10_000  # longest string argument accepted (a 1 MB argument is an error, not data)
MAX_NESTING = 8  # deepest list/dict nesting accepted in one argument
MAX_NODES = 2_000  # most list items + dict entries in one argument
MAX_ABS_INT = 10**12  # ints beyond this are errors (room counts, verification codes)


def _spec(description: str, inputs: dict[str, tuple[str, str]], outputs: dict[str, tuple[str, str]]) -> dict:
    def params(table: dict[str, tuple[str, str]]) -> dict:
        return {name: {"type": kind, "description": text} for name, (kind, text) in table.items()}

    return {"description": description, "input_parameters": params(inputs), "output_parameters": params(outputs)}


API_SPECS = {
    "AddAgenda": _spec(
        "The API for adding a schedule item includes parameters for token, content, time, and location.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the agenda."),
            "time": ("str", "The time for agenda. Format: %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location of the agenda."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "AddAlarm": _spec(
        "The API for setting an alarm includes a parameter for the time.",
        {
            "token": ("str", "User's token."),
            "time": ("str", "The time for alarm. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "AddMeeting": _spec(
        "This API allows users to make a reservation for a meeting and store the meeting information in the database.Function：Allow users to make a reservation for a meeting.Exception Handling：1. If the reservation is successful, return a success message.2. If the reservation fails, return a corresponding error message.",
        {
            "token": ("str", "User's token."),
            "meeting_topic": ("str", "The title of the meeting, no more than 50 characters."),
            "start_time": ("str", "The start time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "end_time": ("str", "The end time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location where the meeting to be held, no more than 100 characters."),
            "attendees": ("list(str)", "The attendees of the meeting, including names, positions and other information."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "AddReminder": _spec(
        "Add a reminder API that takes three parameters - 'token'，'content' and 'time'. The 'token' parameter refers to the user's token and the 'content' parameter refers to the description of the reminder and the 'time' parameter specifies the time at which the reminder should be triggered.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the conference."),
            "time": ("str", "The time for conference. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "AppointmentRegistration": _spec(
        "This API registers an appointment of hospital.",
        {
            "patient_name": ("str", "The name of patient."),
            "date": ("str", "The date of appointment. Format be like %Y-%m-%d"),
            "doctor_name": ("str", "The name of appointed doctor."),
        },
        {
            "appointment_id": ("str", "The ID of appointment."),
        },
    ),
    "BookHotel": _spec(
        "This API orders a hotel room. Two rooms are ordered if the number of adults is greater than 2. Only one order can be made at same time.",
        {
            "hotel_name": ("str", "The name of the hotel."),
            "check_in_time": ("str", "The time to check in. Format: %Y-%m-%d"),
            "check_out_time": ("str", "The time to check out. Format: %Y-%m-%d"),
            "room_count": ("int", "The number of rooms to order."),
            "adult_count": ("int", "The number of adults."),
            "child_count": ("int", "The number of children."),
        },
        {
            "order_id": ("str", "The ID of the order."),
        },
    ),
    "Calculator": _spec(
        "This API provides basic arithmetic operations: addition, subtraction, multiplication, and division.",
        {
            "formula": ("str", "The formula that needs to be calculated. Only integers are supported. Valid operators are +, -, *, /, and (, ). For example, '(1 + 2) * 3'."),
        },
        {
            "result": ("float", "The result of the formula."),
        },
    ),
    "CancelRegistration": _spec(
        "This API cancels the registration of a patient given appointment ID.",
        {
            "appointment_id": ("str", "The ID of appointment."),
        },
        {
            "status": ("str", "The status of cancellation."),
        },
    ),
    "CancelTimedSwitch": _spec(
        "Cancels a timed switch for a smart device.",
        {
            "name": ("str", "The name of the smart device."),
            "time": ("str", "The time to switch the device on or off. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "Whether the time switch is successful."),
        },
    ),
    "DeleteAccount": _spec(
        "Delete an account.",
        {
            "token": ("str", "The token of the user."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "DeleteAgenda": _spec(
        "The API for deleting a schedule item includes parameters for token, content, time, and location.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the agenda."),
            "time": ("str", "The time for agenda. Format: %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location of the agenda."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "DeleteAlarm": _spec(
        "The API for removing an alarm includes a parameter for the time.",
        {
            "token": ("str", "User's token."),
            "time": ("str", "The time for alarm. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "DeleteMeeting": _spec(
        "This API allows users to delete a reservation for a meeting and remove the meeting information in the database.Function：Delete user's reservation for a meeting.Exception Handling：1. If the deletion is successful, return a success message.2. If the deletion fails, return a corresponding error message.",
        {
            "token": ("str", "User's token."),
            "meeting_topic": ("str", "The title of the meeting, no more than 50 characters."),
            "start_time": ("str", "The start time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "end_time": ("str", "The end time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location where the meeting to be held, no more than 100 characters."),
            "attendees": ("list(str)", "The attendees of the meeting, including names, positions and other information."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "DeleteReminder": _spec(
        "The API for deleting a reminder item includes content and time.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the conference."),
            "time": ("str", "The time for conference. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "DeleteScene": _spec(
        "This API deletes a scene by its name.",
        {
            "name": ("str", "The name of the scene."),
        },
        {
            "status": ("str", "Whether the deletion is successful."),
        },
    ),
    "Dictionary": _spec(
        "This API searches the dictionary for a given keyword.",
        {
            "keyword": ("str", "The keyword to search."),
        },
        {
            "results": ("list", "The list of results. Format be like [{\"partOfSpeech\": \"xxx\", \"definitions\": [{\"definition\": \"xxx\", \"example\": \"xxx\", \"synonyms\": [\"xxx\", \"xxx\"]}, ...]"),
        },
    ),
    "DocumentQA": _spec(
        "This API answers the question from a given document url.",
        {
            "url": ("str", "The url to download the document. It should end with .txt."),
            "question": ("str", "The question to be answered."),
        },
        {
            "answer": ("str", "The answer to the question."),
        },
    ),
    "EmergencyKnowledge": _spec(
        "This API searches for a given symptom.",
        {
            "symptom": ("str", "The symptom to search."),
        },
        {
            "results": ("list", "The list of results. Format be like [{\"name\":possible disease name, \"aid\": first-aid method},...]"),
        },
    ),
    "ForgotPassword": _spec(
        "Sends an email to the user with a link to reset the password. Need call twice, first with 'Forgot Password' status to get the verification code, then call again with 'Verification Code' status to change the password. Must pass the name of the parameters when calling the API, like ForgotPassword(status='Forgot Password', username='username').",
        {
            "status": ("str", "'Forgot Password' for first call, after get the verification code, call again with 'Verification Code' to change the password."),
            "username": ("str", "The username of the user. Only needed for the first call."),
            "email": ("str", "The email of the user. Only needed for the first call."),
            "verification_code": ("int", "The verification code sent to the user. Only needed for the second call."),
            "new_password": ("str", "The new password of the user. Only needed for the second call."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "GetToday": _spec(
        "This API gets the current date.",
        {
        },
        {
            "date": ("str", "The current date. Format: %Y-%m-%d"),
        },
    ),
    "GetUserToken": _spec(
        "Get the user token.",
        {
            "username": ("str", "The username of the user."),
            "password": ("str", "The password of the user."),
        },
        {
            "token": ("str", "The token of the user."),
        },
    ),
    "ImageCaption": _spec(
        "This API generates a caption for a given image.",
        {
            "url": ("str", "The url to download the image. It should end with .jpg, .jpeg or .png."),
        },
        {
            "caption": ("str", "The generated caption."),
        },
    ),
    "ModifyAgenda": _spec(
        "The API for modifying a schedule item includes parameters for token, content, time, and location.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the agenda."),
            "time": ("str", "The new time for agenda. Format: %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The new location of the agenda."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "ModifyAlarm": _spec(
        "The API for modifying an alarm includes a parameter for the from_time to to_time.",
        {
            "token": ("str", "User's token."),
            "from_time": ("str", "The time for alarm which changed from. Format: %Y-%m-%d %H:%M:%S"),
            "to_time": ("str", "The time for alarm which changed to. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "ModifyMeeting": _spec(
        "This API allows users to modify a reservation for a meetingFunction：Delete user's reservation for a meeting.Exception Handling：1. If the modification is successful, return a success message.2. If the modification fails, return a corresponding error message.",
        {
            "token": ("str", "User's token."),
            "meeting_topic": ("str", "The title of the meeting, no more than 50 characters."),
            "start_time": ("str", "The start time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "end_time": ("str", "The end time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location where the meeting to be held, no more than 100 characters."),
            "attendees": ("list(str)", "The attendees of the meeting, including names, positions and other information."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "ModifyPassword": _spec(
        "The API for modifying the password of the account.",
        {
            "token": ("str", "The token of the user."),
            "old_password": ("str", "The old password of the user."),
            "new_password": ("str", "The new password of the user."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "ModifyRegistration": _spec(
        "This API modifies the registration of a patient given appointment ID.",
        {
            "appointment_id": ("str", "The ID of appointment."),
            "new_appointment_date": ("str", "The new appointment date. Format: %Y-%m-%d."),
            "new_appointment_doctor": ("str", "The new appointment doctor."),
        },
        {
            "status": ("str", "The status of modification."),
        },
    ),
    "ModifyReminder": _spec(
        "Modify a reminder API that takes three parameters - 'token'，'content' and 'time'. The 'token' parameter refers to the user's token and the 'content' parameter refers to the description of the reminder and the 'time' parameter specifies the time at which the reminder should be triggered.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the conference."),
            "time": ("str", "The time for conference. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "OpenBankAccount": _spec(
        "This is an API for opening a bank account for a user, given the account, password and name.",
        {
            "account": ("str", "The account for the user."),
            "password": ("str", "The password."),
            "name": ("str", "account holder name."),
        },
        {
            "status": ("str", "success or failed"),
        },
    ),
    "PlayMusic": _spec(
        "This API triggers a music player to play music.",
        {
            "music_name": ("str", "The name of the music to play."),
        },
        {
            "status": ("str", "The corresponding url scheme to trigger the music player."),
        },
    ),
    "QueryAgenda": _spec(
        "The API for getting a schedule item includes parameters for token, content, time, and location.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the agenda."),
            "time": ("str", "The time for agenda. Format: %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location of the agenda."),
        },
        {
            "info": ("json", "agenda info including username and time"),
        },
    ),
    "QueryAlarm": _spec(
        "The API for querying alarm clock, help user to check the alarm clock they have set.",
        {
            "token": ("str", "User's token."),
            "time": ("str", "The time for alarm. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "info": ("json", "alarm info including username, time, content and location"),
        },
    ),
    "QueryBalance": _spec(
        "This API queries the balance of a given user.",
        {
            "token": ("str", "The token of the user."),
        },
        {
            "balance": ("float", "The balance of the user."),
        },
    ),
    "QueryHealthData": _spec(
        "This API queries the recorded health data in database of a given user and time span.",
        {
            "user_id": ("str", "The user id of the given user. Cases are ignored."),
            "start_time": ("str", "The start time of the time span. Format: %Y-%m-%d %H:%M:%S"),
            "end_time": ("str", "The end time of the time span. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "health_data": ("list", "The health data of the given user and time span."),
        },
    ),
    "QueryHistoryToday": _spec(
        "This API queries the history of a given user today.",
        {
            "date": ("str", "The date of the history. Format: %m-%d"),
        },
        {
            "history": ("list", "The history of the user today."),
        },
    ),
    "QueryMeeting": _spec(
        "This API allows users to query a reservation for a meeting.Function：Query infomation for a meeting.Exception Handling：1. If the Query is successful, return a meeting infomation with json.2. If the Query fails, return a error message.",
        {
            "token": ("str", "User's token."),
            "meeting_topic": ("str", "The title of the meeting, no more than 50 characters."),
            "start_time": ("str", "The start time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "end_time": ("str", "The end time of the meeting, in the pattern of %Y-%m-%d %H:%M:%S"),
            "location": ("str", "The location where the meeting to be held, no more than 100 characters."),
            "attendees": ("list(str)", "The attendees of the meeting, including names, positions and other information."),
        },
        {
            "meeting_info": ("json", "meeting info"),
        },
    ),
    "QueryRegistration": _spec(
        "This API queries the registration of a patient given patient ID.",
        {
            "patient_name": ("str", "The name of patient."),
            "date": ("str", "The date of appointment. Format be like %Y-%m-%d"),
        },
        {
            "appointments": ("list", "The dict where from appointment_id to a list like [\"patient_name\":xxx, \"date\":xxx, \"doctor_name\":xxx]"),
        },
    ),
    "QueryReminder": _spec(
        "The API for querying a reminder item includes content and time.",
        {
            "token": ("str", "User's token."),
            "content": ("str", "The content of the reminder."),
            "time": ("str", "The time for the reminder. Format: %Y-%m-%d %H:%M:%S"),
        },
        {
            "reminder_info": ("json", "remind info"),
        },
    ),
    "QueryScene": _spec(
        "This API queries a scene of smart home system, given the scene name",
        {
            "name": ("str", "The name of the scene."),
        },
        {
            "devices": ("list", "The list of smart devices, containing the name and description."),
        },
    ),
    "QueryStock": _spec(
        "This API queries the stock price of a given stock.",
        {
            "stock_code": ("str", "The stock code of the given stock."),
            "date": ("str", "The date of the stock price. Format: %Y-%m-%d"),
        },
        {
            "stock_price": ("float", "The stock price of the given stock."),
        },
    ),
    "RecordHealthData": _spec(
        "This API records the health history of a patient given user ID, time and health data.",
        {
            "user_id": ("str", "The ID of user."),
            "time": ("str", "The time of health data. Format: %Y-%m-%d %H:%M:%S"),
            "health_data": ("list", "The health data, with the format like [{'name': 'blood_pressure', 'value': '120/80'}, {'name': 'heart_rate', 'value': '80'}]"),
        },
        {
            "status": ("str", "The status of recording."),
        },
    ),
    "RegisterUser": _spec(
        "The API for registering a account, given the username, password and email.",
        {
            "username": ("str", "The username of the user."),
            "password": ("str", "The password of the user."),
            "email": ("str", "The email of the user."),
        },
        {
            "token": ("str", "The token of the user."),
        },
    ),
    "SearchEngine": _spec(
        "This API searches for a given keyword for search engine.",
        {
            "keyword": ("str", "The keyword to search."),
        },
        {
            "results": ("list", "The list of results."),
        },
    ),
    "SendEmail": _spec(
        "This API for sending email, given the receiver, subject and content.",
        {
            "receiver": ("str", "The receiver address of the email."),
            "subject": ("str", "The subject address of the email."),
            "content": ("str", "The content of the email."),
        },
        {
            "status": ("str", "The status of the email."),
        },
    ),
    "SpeechRecognition": _spec(
        "This API recognizes the speech from a given audio url.",
        {
            "url": ("str", "The url to download the audio. It should end with .wav."),
        },
        {
            "transcript": ("str", "The transcript of the audio."),
        },
    ),
    "SymptomSearch": _spec(
        "This API searches for a given symptom.",
        {
            "symptom": ("str", "The symptom to search."),
        },
        {
            "results": ("list", "The list of results. Format be like [{\"name\":possible disease name, \"description\": disease details},...]"),
        },
    ),
    "TimedSwitch": _spec(
        "This API for setting a timed switch for a smart device.",
        {
            "name": ("str", "The name of the smart device."),
            "time": ("str", "The time to switch the device on or off. Format: %Y-%m-%d %H:%M:%S"),
            "on": ("bool", "Whether to switch the device on or off."),
        },
        {
            "status": ("str", "Whether the time switch is successful."),
        },
    ),
    "ToolSearcher": _spec(
        "Searches for relevant tools in library based on the keywords.",
        {
            "keywords": ("str", "The keyword to search for."),
        },
        {
            "best_matchs": ("Union[List[dict], dict]", "The best match tool(s)."),
        },
    ),
    "Translate": _spec(
        "The API for translating text from source language to target language.",
        {
            "src": ("str", "The text to be translated."),
            "src_lang": ("str", "[Optional] The source language to translate from. Default is auto."),
            "tgt_lang": ("str", "[Optional] The target language to translate to. Default is english/en."),
        },
        {
            "translated_text": ("str", "The translated text."),
        },
    ),
    "Wiki": _spec(
        "This API for searching a keyword in Wikipedia.",
        {
            "keyword": ("str", "The keyword to search."),
        },
        {
            "results": ("dict", "The list of results. Format be like {\"url\": \"xxx\", \"summary\": \"xxx\", \"content\": \"xxx\"}"),
        },
    ),
}

# Parameters that may be left out (the original implementations give them defaults or ignore
# them on some calls); every other input parameter is required.
OPTIONAL_PARAMS: dict[str, frozenset[str]] = {
    "ForgotPassword": frozenset({"username", "email", "verification_code", "new_password"}),
    "ModifyRegistration": frozenset({"new_appointment_date", "new_appointment_doctor"}),
    "Translate": frozenset({"src_lang", "tgt_lang"}),
}

# The recorded dialogues and the level-1 gold calls name the device `device_id`, from an older
# version of the timed-switch APIs; the descriptions say `name`. Both are accepted.
PARAM_ALIASES: dict[str, dict[str, str]] = {
    "TimedSwitch": {"device_id": "name"},
    "CancelTimedSwitch": {"device_id": "name"},
}

_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "list": "array"}


def _json_schema(kind: str, description: str) -> dict:
    if kind == "list(str)":
        return {"type": "array", "items": {"type": "string"}, "description": description}
    return {"type": _JSON_TYPES[kind], "description": description}


def _openai_schema(name: str, spec: dict) -> ToolSpec:
    inputs = spec["input_parameters"]
    optional = OPTIONAL_PARAMS.get(name, frozenset())
    return {
        "name": name,
        "description": spec["description"],
        "parameters": {
            "type": "object",
            "properties": {p: _json_schema(v["type"], v["description"]) for p, v in inputs.items()},
            "required": [p for p in inputs if p not in optional],
        },
    }


API_SCHEMAS: dict[str, ToolSpec] = {name: _openai_schema(name, spec) for name, spec in API_SPECS.items()}


def tools_for(names: list[str]) -> list[ToolSpec]:
    """OpenAI-style schemas for the named APIs, in the order given (copies: callers may edit them)."""
    unknown = [n for n in names if n not in API_SCHEMAS]
    if unknown:
        raise CahlInputError(f"unknown API-Bank API(s) {unknown}; known: {sorted(API_SCHEMAS)}")
    return [copy.deepcopy(API_SCHEMAS[n]) for n in names]


def _check_size(name: str, value: Any) -> None:
    """Reject over-long strings, deep nesting and huge containers without recursing."""
    stack, nodes = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str) and len(item) > MAX_STRING_CHARS:
            raise CahlInputError(f"argument {name!r} holds a string of {len(item)} characters; the limit is {MAX_STRING_CHARS}")
        if isinstance(item, (list, dict)):
            if depth >= MAX_NESTING:
                raise CahlInputError(f"argument {name!r} is nested deeper than {MAX_NESTING} levels")
            nodes += len(item)
            if nodes > MAX_NODES:
                raise CahlInputError(f"argument {name!r} holds more than {MAX_NODES} items")
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


_INT_TEXT = re.compile(r"[+-]?\d{1,13}")
_FLOAT_TEXT = re.compile(r"[+-]?(\d{1,15}(\.\d{0,15})?|\.\d{1,15})")


def _parse_list_text(text: str) -> Any:
    """A list written as JSON or as a Python literal (`"['a', 'b']"`), parsed as data."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _coerce(name: str, kind: str, value: Any) -> Any:
    """`value` as API-Bank type `kind`, converting from text the way API-Bank's tool manager does."""
    expected = f"argument {name!r} must be of type {kind}"
    if kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "int":
        if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            if abs(value) > MAX_ABS_INT:
                raise CahlInputError(f"argument {name!r} = {_preview(value)} is out of range (|x| <= {MAX_ABS_INT})")
            return value
    elif kind == "float":
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) <= 1e15:
            return float(value)
    elif kind == "bool":
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if isinstance(value, bool):
            return value
    elif kind in ("list", "list(str)"):
        parsed = _parse_list_text(value) if isinstance(value, str) else value
        if parsed is not value:
            _check_size(name, parsed)
        if isinstance(parsed, list) and (kind == "list" or all(isinstance(v, str) for v in parsed)):
            return parsed
        if kind == "list(str)":
            expected += " (a list of strings)"
    else:
        raise AssertionError(f"API spec uses unknown type {kind!r}")
    raise CahlInputError(f"{expected}, got {type(value).__name__} {_preview(value)}")


def _shown_name(name: Any) -> str:
    """A model-written API or parameter name for a message: at most 60 characters of a string
    (a 100k-character name must not flood the context), only the type of anything else."""
    if not isinstance(name, str):
        return f"<{type(name).__name__}>"
    return repr(name) if len(name) <= 60 else repr(name[:57]) + "..."


def _preview(value: Any) -> str:
    if isinstance(value, int) and value.bit_length() > 64:  # repr of a 5000-digit int raises
        return f"<int of {value.bit_length()} bits>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_arguments(api_name: str, arguments: Any) -> dict[str, Any]:
    """The call's arguments validated against the API's parameters and converted to their types.

    Raises CahlInputError naming the API and the parameter at fault: unknown API, arguments that
    are not an object, unknown or missing parameters, values of the wrong type or too large.
    """
    if not isinstance(api_name, str) or api_name not in API_SPECS:
        raise CahlInputError(f"unknown API {_shown_name(api_name)}; use ToolSearcher to find one, or one of {sorted(API_SPECS)}")
    if not isinstance(arguments, dict):
        raise CahlInputError(f"{api_name}: arguments must be an object, got {type(arguments).__name__}")
    inputs = API_SPECS[api_name]["input_parameters"]
    aliases = PARAM_ALIASES.get(api_name, {})
    converted: dict[str, Any] = {}
    for key, value in arguments.items():
        param = aliases.get(key, key)
        if param not in inputs:
            raise CahlInputError(f"{api_name}: unknown parameter {_shown_name(key)}; expected parameters {list(inputs)}")
        if param in converted:
            raise CahlInputError(f"{api_name}: parameter {param!r} given twice (as {key!r} and its alias)")
        _check_size(key, value)
        converted[param] = _coerce(key, inputs[param]["type"], value)
    missing = [p for p in inputs if p not in converted and p not in OPTIONAL_PARAMS.get(api_name, ())]
    if missing:
        raise CahlInputError(f"{api_name}: missing required parameter(s) {missing}")
    return converted
