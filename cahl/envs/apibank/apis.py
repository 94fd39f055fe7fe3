"""Our implementations of the 50 API-Bank APIs of the level-1 and level-2 dialogues.

Written from the APIs' descriptions (specs.py), the failure messages listed in
`data/exceptions.json` and the results recorded in the sample dialogues. Each API is a function
`(state, **arguments) -> output`; arguments arrive already checked and converted by
`specs.check_arguments`. A failure the API reports to the caller (bad token, unknown record,
malformed time) is raised as ApiError, whose message becomes API-Bank's `exception` field.

Deliberate choices where the original is random, networked or buggy:
- Generated values are deterministic: RegisterUser's token and AppointmentRegistration's id are
  hashes of the inputs (the originals draw them at random, so no replay can reproduce them).
- GetToday is fixed at 2023-03-31 and ForgotPassword's verification code at 970420, the values in
  every recorded dialogue.
- Dictionary and Translate call web services in the original and the dataset has no table for
  them; here they answer from the calls recorded in the sample dialogues, else fail.
- DocumentQA looks the question up in QuestionAnswering.json. (The original compares the question
  with a list of dicts, never matches, and always answers "The question is too difficult to
  answer."; the recorded dialogues carry that answer.)
"""

from __future__ import annotations

import copy
import hashlib
import re
from datetime import datetime
from typing import Any, Callable

from cahl.envs.apibank.calculator import FormulaError, calculate
from cahl.envs.apibank.search import bm25_scores, rank_tools, split_name, tokenize, top_k
from cahl.envs.apibank.specs import API_SPECS
from cahl.envs.apibank.store import EpisodeState, caption_index, recorded_outputs

TODAY = "2023-03-31"
VERIFICATION_CODE = 970420
DATETIME, DATE = "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"


class ApiError(Exception):
    """A failure the API reports to its caller (API-Bank's `exception` field)."""


# ----------------------------------------------------------------------------- helpers

def _parse_time(value: str, fmt: str, what: str) -> datetime:
    try:
        return datetime.strptime(value.strip(), fmt)
    except ValueError:
        raise ApiError(f"{what} {value!r} does not match the format {fmt}") from None


def _username(state: EpisodeState, token: str) -> str:
    """The account that owns the token (tokens are fixed per account in Account.json)."""
    for username, account in state.read("Account").items():
        if account["token"] == token:
            return username
    raise ApiError("The token is invalid.")


def _new_id(table: dict) -> str:
    """Next numeric key: one more than the largest (the original's len+1 collides after deletes)."""
    return str(max((int(k) for k in table if str(k).isdigit()), default=0) + 1)


def _find(table: dict, username: str, **wanted: str) -> str | None:
    """Key of the user's first record that agrees with any one of the wanted field values."""
    for key, record in table.items():
        if record.get("username") == username and any(v and record.get(f) == v for f, v in wanted.items()):
            return key
    return None


def _not_empty(value: str, message: str) -> str:
    if not value.strip():
        raise ApiError(message)
    return value


def _stable_digest(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest(), 16)


# ----------------------------------------------------------------------------- accounts

def get_user_token(state: EpisodeState, username: str, password: str) -> dict:
    accounts = state.read("Account")
    if username not in accounts:
        raise ApiError("The username does not exist.")
    if accounts[username]["password"] != password:
        raise ApiError("The password is incorrect.")
    return {"token": accounts[username]["token"]}


def register_user(state: EpisodeState, username: str, password: str, email: str) -> dict:
    if username in state.read("Account"):
        raise ApiError("The username already exists.")
    accounts = state.write("Account")
    taken = {a["token"] for a in accounts.values()}
    digest = _stable_digest(username, email)
    while (token := f"{digest:064x}"[:32]) in taken:
        digest += 1
    accounts[username] = {"password": password, "token": token, "email": email}
    return {"token": token}


def delete_account(state: EpisodeState, token: str) -> dict:
    username = _username(state, token)
    del state.write("Account")[username]
    return {"status": "success"}


def modify_password(state: EpisodeState, token: str, old_password: str, new_password: str) -> dict:
    username = _username(state, token)
    if state.read("Account")[username]["password"] != old_password:
        raise ApiError("The old password is incorrect.")
    state.write("Account")[username]["password"] = new_password
    return {"status": "success"}


def forgot_password(state: EpisodeState, status: str, username: str | None = None, email: str | None = None,
                    verification_code: int | None = None, new_password: str | None = None) -> Any:
    """Two calls: 'Forgot Password' (username, email) sends the code; 'Verification Code' sets the password."""
    if status == "Forgot Password":
        if not username or not email:
            raise ApiError("The username and email are required for the first call.")
        accounts = state.read("Account")
        if username not in accounts:
            raise ApiError("The username does not exist.")
        if accounts[username]["email"] != email:
            raise ApiError("The email is incorrect.")
        state.pending_password_reset = username
        return VERIFICATION_CODE
    if status == "Verification Code":
        if state.pending_password_reset is None:
            raise ApiError('You need to call the API with status "Forgot Password" at first.')
        if verification_code is None or not new_password:
            raise ApiError("The new password and verification code are required for the second call.")
        if verification_code != VERIFICATION_CODE:
            raise ApiError("The verification code is incorrect.")
        state.write("Account")[state.pending_password_reset]["password"] = new_password
        state.pending_password_reset = None
        return "success"
    raise ApiError('The status is only "Forgot Password" or "Verification Code".')


# ----------------------------------------------------------------------------- agenda, alarms, reminders, meetings

def add_agenda(state: EpisodeState, token: str, content: str, time: str, location: str) -> str:
    _parse_time(time, DATETIME, "time")
    _not_empty(content, "Content should not be null")
    username = _username(state, token)
    agenda = state.write("Agenda")
    agenda[_new_id(agenda)] = {"content": content, "time": time, "location": location, "username": username}
    return "success"


def _agenda_key(state: EpisodeState, token: str, content: str, time: str) -> str:
    if time:
        _parse_time(time, DATETIME, "time")
    key = _find(state.read("Agenda"), _username(state, token), content=content, time=time)
    if key is None:
        raise ApiError(f"You have no agenda about {content}" if content else f"You have no agenda at time : {time}")
    return key


def query_agenda(state: EpisodeState, token: str, content: str, time: str, location: str) -> dict:
    return state.read("Agenda")[_agenda_key(state, token, content, time)]


def delete_agenda(state: EpisodeState, token: str, content: str, time: str, location: str) -> str:
    key = _agenda_key(state, token, content, time)
    del state.write("Agenda")[key]
    return "success"


def modify_agenda(state: EpisodeState, token: str, content: str, time: str, location: str) -> str:
    key = _agenda_key(state, token, content, time)
    given = {"content": content, "time": time, "location": location}
    state.write("Agenda")[key].update({k: v for k, v in given.items() if v})
    return "success"


def add_alarm(state: EpisodeState, token: str, time: str) -> str:
    _parse_time(time, DATETIME, "time")
    username = _username(state, token)
    alarms = state.write("Alarm")
    alarms[_new_id(alarms)] = {"time": time, "username": username}
    return "success"


def _alarm_key(state: EpisodeState, token: str, time: str) -> str:
    _parse_time(time, DATETIME, "time")
    key = _find(state.read("Alarm"), _username(state, token), time=time)
    if key is None:
        raise ApiError(f"You have no alarm clock at time : {time}")
    return key


def query_alarm(state: EpisodeState, token: str, time: str) -> dict:
    return state.read("Alarm")[_alarm_key(state, token, time)]


def delete_alarm(state: EpisodeState, token: str, time: str) -> str:
    key = _alarm_key(state, token, time)
    del state.write("Alarm")[key]
    return "success"


def modify_alarm(state: EpisodeState, token: str, from_time: str, to_time: str) -> str:
    _parse_time(to_time, DATETIME, "to_time")
    key = _alarm_key(state, token, from_time)
    state.write("Alarm")[key]["time"] = to_time
    return "success"


def add_reminder(state: EpisodeState, token: str, content: str, time: str) -> str:
    _parse_time(time, DATETIME, "time")
    _not_empty(content, "Content should not be null")
    username = _username(state, token)
    reminders = state.write("Reminder")
    reminders[_new_id(reminders)] = {"content": content, "time": time, "username": username}
    return "success"


def _reminder_key(state: EpisodeState, token: str, content: str, time: str) -> str:
    _not_empty(content, "Content should not be null")
    _parse_time(time, DATETIME, "time")
    key = _find(state.read("Reminder"), _username(state, token), content=content, time=time)
    if key is None:
        raise ApiError(f"You have no reminder about {content} or at time : {time}")
    return key


def query_reminder(state: EpisodeState, token: str, content: str, time: str) -> dict:
    return state.read("Reminder")[_reminder_key(state, token, content, time)]


def delete_reminder(state: EpisodeState, token: str, content: str, time: str) -> str:
    key = _reminder_key(state, token, content, time)
    del state.write("Reminder")[key]
    return "success"


def modify_reminder(state: EpisodeState, token: str, content: str, time: str) -> str:
    key = _reminder_key(state, token, content, time)
    state.write("Reminder")[key].update(content=content, time=time)  # both are required non-empty
    return "success"


def add_meeting(state: EpisodeState, token: str, meeting_topic: str, start_time: str, end_time: str,
                location: str, attendees: list[str]) -> str:
    _not_empty(meeting_topic, "Meeting Topic should not be null")
    _parse_time(start_time, DATETIME, "start_time")
    _parse_time(end_time, DATETIME, "end_time")
    username = _username(state, token)
    meetings = state.write("Meeting")
    meetings[_new_id(meetings)] = {"meeting_topic": meeting_topic, "start_time": start_time, "end_time": end_time,
                                   "location": location, "attendees": attendees, "username": username}
    return "success"


def _meeting_key(state: EpisodeState, token: str, meeting_topic: str, start_time: str, end_time: str) -> str:
    for value, what in ((start_time, "start_time"), (end_time, "end_time")):
        if value:
            _parse_time(value, DATETIME, what)
    if not meeting_topic.strip() and not start_time:
        raise ApiError("Meeting Topic and start_time should not be null both")
    key = _find(state.read("Meeting"), _username(state, token), meeting_topic=meeting_topic, start_time=start_time)
    if key is None:
        raise ApiError(f"You have no meeting about {meeting_topic}" if meeting_topic
                       else f"You have no meeting at time : {start_time}")
    return key


def query_meeting(state: EpisodeState, token: str, meeting_topic: str, start_time: str, end_time: str,
                  location: str, attendees: list[str]) -> dict:
    return state.read("Meeting")[_meeting_key(state, token, meeting_topic, start_time, end_time)]


def delete_meeting(state: EpisodeState, token: str, meeting_topic: str, start_time: str, end_time: str,
                   location: str, attendees: list[str]) -> str:
    key = _meeting_key(state, token, meeting_topic, start_time, end_time)
    del state.write("Meeting")[key]
    return "success"


def modify_meeting(state: EpisodeState, token: str, meeting_topic: str, start_time: str, end_time: str,
                   location: str, attendees: list[str]) -> str:
    key = _meeting_key(state, token, meeting_topic, start_time, end_time)
    given = {"meeting_topic": meeting_topic, "start_time": start_time, "end_time": end_time,
             "location": location, "attendees": attendees}
    state.write("Meeting")[key].update({k: v for k, v in given.items() if v})
    return "success"


# ----------------------------------------------------------------------------- health and hospital

def _date(value: str, what: str) -> str:
    return _parse_time(value, DATE, what).strftime(DATE)


def appointment_registration(state: EpisodeState, patient_name: str, date: str, doctor_name: str) -> str:
    if not patient_name.strip() or not doctor_name.strip():
        raise ApiError("Patient name or doctor name cannot be empty.")
    date = _date(date, "date")
    for record in state.read("Appointments").values():
        if record["patient_name"] == patient_name and record["date"] == date:
            if record["doctor_name"] == doctor_name:
                raise ApiError("This appointment has already been registered.")
            raise ApiError("This patient has already been registered in this day.")
    appointments = state.write("Appointments")
    digest = _stable_digest(patient_name, date, doctor_name)
    while (appointment_id := f"{digest % 10**8:08d}") in appointments:
        digest += 1
    appointments[appointment_id] = {"patient_name": patient_name, "date": date, "doctor_name": doctor_name}
    return appointment_id


def query_registration(state: EpisodeState, patient_name: str, date: str) -> dict:
    date = _date(date, "date")
    found = {key: record for key, record in state.read("Appointments").items()
             if record["patient_name"] == patient_name.strip() and record["date"] == date}
    if not found:
        raise ApiError("No appointments found.")
    return found


def modify_registration(state: EpisodeState, appointment_id: str, new_appointment_date: str | None = None,
                        new_appointment_doctor: str | None = None) -> str:
    appointment_id = appointment_id.strip()
    if appointment_id not in state.read("Appointments"):
        raise ApiError("The appointment ID does not exist.")
    record = state.read("Appointments")[appointment_id]
    new_date = _date(new_appointment_date, "new_appointment_date") if new_appointment_date is not None else None
    new_doctor = new_appointment_doctor.strip() if new_appointment_doctor is not None else None
    if new_doctor == "":
        raise ApiError("Fail because the doctor name is empty.")
    if new_date is None and new_doctor is None:
        raise ApiError("Fail because no modification is made.")
    date_same = new_date is not None and new_date == record["date"]
    doctor_same = new_doctor is not None and new_doctor == record["doctor_name"]
    if date_same and doctor_same:
        raise ApiError("Fail because no modification is made.")
    if date_same:
        raise ApiError("Fail because date is not changed.")
    if doctor_same:
        raise ApiError("Fail because doctor is not changed.")
    changes = {k: v for k, v in (("date", new_date), ("doctor_name", new_doctor)) if v is not None}
    state.write("Appointments")[appointment_id].update(changes)
    return "success"


def cancel_registration(state: EpisodeState, appointment_id: str) -> str:
    if appointment_id.strip() not in state.read("Appointments"):
        raise ApiError("The appointment ID is incorrect.")
    del state.write("Appointments")[appointment_id.strip()]
    return "success"


def record_health_data(state: EpisodeState, user_id: str, time: str, health_data: list) -> str:
    user_id = _not_empty(user_id, "The user id cannot be empty.").strip().upper()
    time = _parse_time(time, DATETIME, "time").strftime(DATETIME)
    if not health_data:
        raise ApiError("The health data cannot be empty.")
    if not all(isinstance(item, dict) and "name" in item and "value" in item for item in health_data):
        raise ApiError("The health data has invalid format: expected [{'name': ..., 'value': ...}, ...].")
    names = [str(item["name"]) for item in health_data]
    if len(set(names)) != len(names):
        raise ApiError("The health data cannot contain duplicate items.")
    records = state.write("HealthData").setdefault(user_id, [])
    record = next((r for r in records if r["time"] == time), None)
    if record is None:
        record = {"time": time}
        records.append(record)
    record.update({str(item["name"]): item["value"] for item in health_data})
    return "success"


def query_health_data(state: EpisodeState, user_id: str, start_time: str, end_time: str) -> list:
    user_id = _not_empty(user_id, "The user id cannot be empty.").strip().upper()
    start, end = _parse_time(start_time, DATETIME, "start_time"), _parse_time(end_time, DATETIME, "end_time")
    if start > end:
        raise ApiError("The start time cannot be later than the end time.")
    records = state.read("HealthData")
    if user_id not in records:
        raise ApiError("The user id does not exist.")
    return [r for r in records[user_id] if start <= datetime.strptime(r["time"], DATETIME) <= end]


def _symptom_entries(state: EpisodeState, symptom: str) -> list[dict]:
    symptom = _not_empty(symptom, "The symptom cannot be empty.").strip().lower()
    table = state.read("Symptom")
    if symptom not in table:
        raise ApiError("The symptom does not exist.")
    return table[symptom]


def symptom_search(state: EpisodeState, symptom: str) -> list:
    return [{"name": e["name"], "description": e["description"]} for e in _symptom_entries(state, symptom)]


def emergency_knowledge(state: EpisodeState, symptom: str) -> list:
    return [{"name": e["name"], "aid": e["aid"]} for e in _symptom_entries(state, symptom)]


# ----------------------------------------------------------------------------- money, travel, home

def query_stock(state: EpisodeState, stock_code: str, date: str) -> float:
    code = _not_empty(stock_code, "The stock code cannot be empty.").strip().upper()
    prices = state.read("Stock")
    if code not in prices:
        raise ApiError("The stock code does not exist.")
    if date.strip() not in prices[code]:
        raise ApiError("The stock price of this date is not maintained.")
    return prices[code][date.strip()]


def query_balance(state: EpisodeState, token: str) -> float:
    username = _username(state, token)
    bank = state.read("Bank")
    if username not in bank:
        raise ApiError("The user does not have an account.")
    return bank[username]["balance"]


def open_bank_account(state: EpisodeState, account: str, password: str, name: str) -> str:
    """Bank accounts opened in this episode (the original keeps them in memory, not in Bank.json)."""
    if account in state.read("BankAccounts"):
        return "failed"
    state.write("BankAccounts")[account] = {"password": password, "name": name}
    return "success"


def book_hotel(state: EpisodeState, hotel_name: str, check_in_time: str, check_out_time: str,
               room_count: int, adult_count: int, child_count: int) -> str:
    _not_empty(hotel_name, "The hotel name cannot be empty.")
    if _parse_time(check_out_time, DATE, "check_out_time") <= _parse_time(check_in_time, DATE, "check_in_time"):
        raise ApiError("The check-out time must be after the check-in time.")
    if room_count < 1 or adult_count < 1 or child_count < 0:
        raise ApiError("The room and adult counts must be at least 1 and the child count at least 0.")
    orders = state.write("Hotel")
    order_id = _new_id(orders)
    orders[order_id] = {"hotel_name": hotel_name, "check_in_time": check_in_time, "check_out_time": check_out_time,
                        "room_count": max(room_count, 2) if adult_count > 2 else room_count,  # as the description says
                        "adult_count": adult_count, "child_count": child_count}
    return order_id


def timed_switch(state: EpisodeState, name: str, time: str, on: bool) -> str:
    name = _not_empty(name, "The device name cannot be empty.").strip().lower()
    time = _parse_time(time, DATETIME, "time").strftime(DATETIME)
    schedule = state.write("TimeSwitch").setdefault(name, [])
    entry = next((e for e in schedule if e["time"] == time), None)
    if entry is None:
        schedule.append({"time": time, "on": on})
    else:
        entry["on"] = on
    return "success"


def cancel_timed_switch(state: EpisodeState, name: str, time: str) -> str:
    name = _not_empty(name, "The device name cannot be empty.").strip().lower()
    time = _parse_time(time, DATETIME, "time").strftime(DATETIME)
    if name not in state.read("TimeSwitch"):
        raise ApiError(f"The device {name!r} does not exist.")
    schedule = state.read("TimeSwitch")[name]
    index = next((i for i, e in enumerate(schedule) if e["time"] == time), None)
    if index is None:
        raise ApiError(f"The device {name!r} has no timed switch at {time}.")
    del state.write("TimeSwitch")[name][index]
    return "success"


def _scene_name(name: str) -> str:
    return _not_empty(name, "Scene name cannot be empty.").strip().lower()


def query_scene(state: EpisodeState, name: str) -> list:
    scenes = state.read("Scenes")
    if _scene_name(name) not in scenes:
        raise ApiError("Scene not found.")
    return scenes[_scene_name(name)]


def delete_scene(state: EpisodeState, name: str) -> str:
    if _scene_name(name) not in state.read("Scenes"):
        raise ApiError("The scene does not exist.")
    del state.write("Scenes")[_scene_name(name)]
    return "success"


def play_music(state: EpisodeState, music_name: str) -> str:
    return "music://" + _not_empty(music_name, "The music name cannot be empty.").strip().lower()


def send_email(state: EpisodeState, receiver: str, subject: str, content: str) -> str:
    """Records the email in the episode (nothing is sent) so a checker can look at it."""
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", receiver.strip()):
        raise ApiError(f"The receiver address {receiver!r} is invalid.")
    outbox = state.write("SentEmails")
    outbox[_new_id(outbox)] = {"receiver": receiver.strip(), "subject": subject, "content": content}
    return "success"


# ----------------------------------------------------------------------------- knowledge and media (offline tables)

def calculator(state: EpisodeState, formula: str) -> float:
    try:
        return calculate(formula)
    except FormulaError as e:
        raise ApiError(f"invalid formula: {e}") from None


def get_today(state: EpisodeState) -> str:
    return TODAY


def query_history_today(state: EpisodeState, date: str) -> list:
    """Events on a month-day; accepts %m-%d or %Y-%m-%d."""
    match = re.fullmatch(r"(?:\d{1,4}-)?(\d{1,2})-(\d{1,2})", date.strip())
    if not match or not (1 <= int(match[1]) <= 12 and 1 <= int(match[2]) <= 31):
        raise ApiError(f"date {date!r} does not match the format %m-%d")
    events = state.read("History").get(f"{int(match[1]):02d}-{int(match[2]):02d}")
    if events is None:
        raise ApiError("The date is not in the database.")
    return [f"Title: {e['Title'].strip()}, Date: {e['Date'].strip()}, Description: {e['Description'].strip()}"
            for e in events]


def wiki(state: EpisodeState, keyword: str) -> dict:
    entry = state.read("Wiki").get(keyword.replace("_", " ").strip().lower())
    if entry is None:
        raise ApiError("Keyword not found.")
    return {"url": entry["url"], "summary": entry["summary"]}


def search_engine(state: EpisodeState, keyword: str) -> list:
    """The two best BM25 matches among SearchEngine.json's documents."""
    table = state.read("SearchEngine")
    scores = bm25_scores(tokenize(keyword.strip()), table["tokenized_documents"])
    return [table["raw_documents"][i] for i in top_k(scores, 2)]


def document_qa(state: EpisodeState, url: str, question: str) -> str:
    _not_empty(question, "The question is empty.")
    documents = state.read("QuestionAnswering")
    if url.strip() not in documents:
        raise ApiError("The document of this url failed to be processed.")
    wanted = question.strip().lower()
    for pair in documents[url.strip()]:
        if pair["question"].strip().lower() == wanted:
            return pair["answer"]
    return "The question is too difficult to answer."


def image_caption(state: EpisodeState, url: str) -> str:
    caption = caption_index(state.root).get(url.strip())
    if caption is None:
        raise ApiError("The image at this url could not be processed.")
    return caption


def speech_recognition(state: EpisodeState, url: str) -> str:
    transcript = state.read("SpeechRecognition").get(url.strip())
    if transcript is None:
        raise ApiError("The audio at this url could not be processed.")
    return transcript


def _recorded_answer(state: EpisodeState, api_name: str, key: Callable[[dict], Any], arguments: dict) -> Any:
    wanted = key(arguments)
    for recorded_arguments, output in recorded_outputs(state.root, api_name):
        if key(recorded_arguments) == wanted:
            return output
    raise ApiError(f"{api_name} runs offline here and has no recorded answer for {wanted!r}.")


def dictionary(state: EpisodeState, keyword: str) -> list:
    return _recorded_answer(state, "Dictionary", lambda a: a["keyword"].replace("_", " ").strip().lower(),
                            {"keyword": keyword})


def translate(state: EpisodeState, src: str, src_lang: str | None = None, tgt_lang: str | None = None) -> str:
    return _recorded_answer(state, "Translate", lambda a: (a["src"].strip(), (a.get("tgt_lang") or "en").strip().lower()),
                            {"src": src, "tgt_lang": tgt_lang})


def tool_searcher(state: EpisodeState, keywords: str) -> Any:
    """The best-matching API's description; APIs that need a token come with GetUserToken's."""
    _not_empty(keywords, "The keywords cannot be empty.")
    names = [name for name in API_SPECS if name != "ToolSearcher"]
    scores = rank_tools(keywords, [(name, API_SPECS[name]["description"]) for name in names])
    best = top_k(scores, 1)[0]
    if scores[best] <= 0:
        raise ApiError(f"No tool matches the keywords {keywords!r}.")
    match = {"name": names[best], **API_SPECS[names[best]]}
    if "token" not in match["input_parameters"]:
        return match
    # The original returns GetUserToken's entry with its search text still attached; kept so our
    # outputs equal the recorded ones.
    token_api = {"name": "GetUserToken", **API_SPECS["GetUserToken"],
                 "desc_for_search": split_name("GetUserToken") + API_SPECS["GetUserToken"]["description"]}
    return [token_api, match]


IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {
    "AddAgenda": add_agenda, "AddAlarm": add_alarm, "AddMeeting": add_meeting, "AddReminder": add_reminder,
    "AppointmentRegistration": appointment_registration, "BookHotel": book_hotel, "Calculator": calculator,
    "CancelRegistration": cancel_registration, "CancelTimedSwitch": cancel_timed_switch,
    "DeleteAccount": delete_account, "DeleteAgenda": delete_agenda, "DeleteAlarm": delete_alarm,
    "DeleteMeeting": delete_meeting, "DeleteReminder": delete_reminder, "DeleteScene": delete_scene,
    "Dictionary": dictionary, "DocumentQA": document_qa, "EmergencyKnowledge": emergency_knowledge,
    "ForgotPassword": forgot_password, "GetToday": get_today, "GetUserToken": get_user_token,
    "ImageCaption": image_caption, "ModifyAgenda": modify_agenda, "ModifyAlarm": modify_alarm,
    "ModifyMeeting": modify_meeting, "ModifyPassword": modify_password, "ModifyRegistration": modify_registration,
    "ModifyReminder": modify_reminder, "OpenBankAccount": open_bank_account, "PlayMusic": play_music,
    "QueryAgenda": query_agenda, "QueryAlarm": query_alarm, "QueryBalance": query_balance,
    "QueryHealthData": query_health_data, "QueryHistoryToday": query_history_today, "QueryMeeting": query_meeting,
    "QueryRegistration": query_registration, "QueryReminder": query_reminder, "QueryScene": query_scene,
    "QueryStock": query_stock, "RecordHealthData": record_health_data, "RegisterUser": register_user,
    "SearchEngine": search_engine, "SendEmail": send_email, "SpeechRecognition": speech_recognition,
    "SymptomSearch": symptom_search, "TimedSwitch": timed_switch, "ToolSearcher": tool_searcher,
    "Translate": translate, "Wiki": wiki,
}
assert set(IMPLEMENTATIONS) == set(API_SPECS), set(IMPLEMENTATIONS) ^ set(API_SPECS)


def run_api(state: EpisodeState, api_name: str, arguments: dict[str, Any]) -> Any:
    """Execute one checked call; the output is a copy, so later writes cannot change it."""
    return copy.deepcopy(IMPLEMENTATIONS[api_name](state, **arguments))
