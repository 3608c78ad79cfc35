"use strict";
// Parses and validates Adaptive Cards with the official Adaptive Cards JavaScript library.
// Usage: node validate_cards.js <path to adaptivecards.js> < cards.json
// stdin: a JSON array of card payloads; stdout: a JSON array holding one array of messages per
// card (an empty array means the library had nothing to say about that card).

const fs = require("fs");

// The library logs through console; stdout must carry nothing but the result.
const writeResult = process.stdout.write.bind(process.stdout);
console.log = console.info = console.warn = console.error;

const AC = require(process.argv[2]);

// Teams renders cards of schema version 1.5, so anything the library only accepts from 1.6 on
// must be reported. Teams does accept Data.Query type-ahead (`choices.data`) in 1.5 cards,
// while the library registers it for 1.6: lower those properties to 1.5.
const TARGET_VERSION = AC.Versions.v1_5;
for (const property of [
    AC.ChoiceSetInput.choicesDataProperty,
    AC.ChoiceSetInputDataQuery.typeProperty,
    AC.ChoiceSetInputDataQuery.datasetProperty,
    AC.ChoiceSetInputDataQuery.countProperty,
    AC.ChoiceSetInputDataQuery.skipProperty
]) {
    property.targetVersion = AC.Versions.v1_5;
}

function describeSource(source) {
    if (!source || typeof source.getJsonTypeName !== "function") {
        return "";
    }
    const id = source.id ? ` id=${JSON.stringify(source.id)}` : "";
    return ` (at ${source.getJsonTypeName()}${id})`;
}

function describe(phase, event) {
    return `${phase} ${AC.ValidationEvent[event.event]}: ${event.message}${describeSource(event.source)}`;
}

// A type-ahead choice set gets its choices from the bot, so it may declare none itself; the
// library's "at least one choice" rule does not know about Data.Query.
function isTeamsTypeAheadWithoutStaticChoices(event) {
    return (
        event.event === AC.ValidationEvent.CollectionCantBeEmpty &&
        event.source instanceof AC.ChoiceSetInput &&
        event.source.isDynamicTypeahead()
    );
}

function check(payload) {
    const card = new AC.AdaptiveCard();
    const context = new AC.SerializationContext(TARGET_VERSION);
    const messages = [];
    try {
        card.parse(payload, context);
    } catch (error) {
        return [`parse exception: ${error && error.message ? error.message : String(error)}`];
    }
    for (let i = 0; i < context.eventCount; i++) {
        messages.push(describe("parse", context.getEventAt(i)));
    }
    const results = card.validateProperties();
    for (const event of results.validationEvents) {
        if (!isTeamsTypeAheadWithoutStaticChoices(event)) {
            messages.push(describe("validate", event));
        }
    }
    return messages;
}

const cards = JSON.parse(fs.readFileSync(0, "utf8"));
if (!Array.isArray(cards)) {
    throw new Error("stdin must hold a JSON array of cards");
}
writeResult(JSON.stringify(cards.map(check)));
