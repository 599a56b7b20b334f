/*
 * offline: the built-in storyteller used when no MISTRAL_API_KEY is set (SPEC 7).
 * See include/offline.h for the contract.
 *
 * How it writes: a BLAKE2b hash of the request (every field length-prefixed) seeds a
 * small deterministic generator (splitmix64) that picks sentence templates and phrases
 * from a bank of genre flavours. Two seeds: the story seed (genre, characters, opening
 * line) fixes the story's world (setting, object, threat, goal, title words), so every
 * part of one story agrees with the others; the part seed (every field, the kind, the
 * parts so far and the user input) picks the sentences of this one part.
 *
 * Client text is cleaned first (control characters and line breaks become spaces, runs
 * of spaces collapse, the length is bounded and cut at a word or character boundary)
 * and is only ever substituted as a value, never read as a template. Every buffer is
 * measured before it is allocated. No global mutable state: thread-safe.
 */
#include "offline.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define OFFLINE_WHO_MAX 120       /* characters of the characters text quoted in a part */
#define OFFLINE_INPUT_EXCERPT 200 /* characters of the user input quoted in a continuation */
#define OFFLINE_NAME_MAX 24       /* characters of one word of a character's name */
#define OFFLINE_GENRE_SCAN 200    /* bytes of the genre searched for keywords */
#define OFFLINE_SENTENCES_MAX 8   /* sentence templates in one part */
#define OFFLINE_KEYS_MAX 12       /* keywords of one genre (NULL-terminated) */
#define OFFLINE_PICKS 3           /* distinct suggestions or ideas drawn */
#define BANK_N 4                  /* phrases of each kind in a genre bank */

#define OFFLINE_ELLIPSIS "\xe2\x80\xa6" /* U+2026, marks a cut excerpt */
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

_Static_assert(OFFLINE_PICKS == TALE_SUGGESTION_COUNT, "three suggestions, three ideas");

/*
 * A genre's flavour. Templates (moods, twists, climaxes, closings) may use the
 * placeholders of offline_expand. Phrases:
 *   hero: indefinite noun phrase ("a young mapmaker"), for ideas and a missing cast;
 *   setting, place: definite noun phrases usable after "in" / "to";
 *   object: noun phrase WITHOUT article ("silver key"): %O adds "the", %Q "a"/"an";
 *   threat: definite noun phrase naming an agent ("the Shadow King");
 *   goal: verb phrase usable after "to" ("find the lost crown");
 *   ally: indefinite noun phrase ("an old hermit");
 *   tadj, tnoun: capitalised title words.
 */
struct offline_bank {
    const char *label;
    const char *keys[OFFLINE_KEYS_MAX];
    const char *heroes[BANK_N], *settings[BANK_N], *objects[BANK_N], *threats[BANK_N];
    const char *goals[BANK_N], *allies[BANK_N], *places[BANK_N], *moods[BANK_N];
    const char *twists[BANK_N], *climaxes[BANK_N], *closings[BANK_N];
    const char *tadjs[BANK_N], *tnouns[BANK_N];
};

/* The named genres, then the generic bank (last) for everything else. */
static const struct offline_bank offline_banks[] = {
    {
        .label = "Fantasy",
        .keys = {"fantasy", "fantas", "magic", "wizard", "witch", "dragon", "sword", "sorcer",
                 "elf", "myth", "epic"},
        .heroes = {"a young mapmaker", "an apprentice witch", "a disgraced knight",
                   "a shepherd who can hear the wind speak"},
        .settings = {"the valley of Eldermere",
                     "a lantern-lit village at the edge of the Whispering Wood",
                     "the floating city of Aerith", "a kingdom where the rivers ran uphill"},
        .objects = {"silver key that hummed in the moonlight",
                    "map drawn in ink that moved on its own", "cracked crown of river glass",
                    "dragon's egg as warm as a hearthstone"},
        .threats = {"the Shadow King",
                    "a dragon that had slept beneath the hill for a thousand years",
                    "the witch of the northern marshes", "the Hollow Knight"},
        .goals = {"find the lost crown of Eldermere", "break the curse on the forest",
                  "reach the Tower of Dawn", "return the stolen starlight to the sky"},
        .allies = {"an old hermit with a crooked staff", "a talking fox with a torn ear",
                   "a wandering bard who knew every road", "a young dragon no bigger than a cat"},
        .places = {"the ruined tower on the hill", "the Bridge of Whispers",
                   "the caves beneath the mountain", "a market where memories were sold"},
        .moods = {"The air smelled of rain and old magic.",
                  "Far away, a bell rang although no hand had touched it.",
                  "The trees leaned closer, as if they wanted to listen.",
                  "Even the stars seemed brighter, and a little restless."},
        .twists = {"^O began to glow, and a door appeared where there had been only stone.",
                   "A voice spoke from the wind and called %N by a name they had never heard.",
                   "The spell on the old gate broke, and something ancient stirred behind it.",
                   "Ravens circled overhead, carrying a warning from %T."},
        .climaxes = {"^N raised %O, and its light tore through the darkness that %T had woven.",
                     "With one word of the old tongue, %N turned the power of %T back on itself.",
                     "The last spell was cast, and the sky cracked open with silver fire.",
                     "^N stood before %T and, instead of fighting, spoke the truth that broke "
                     "the curse."},
        .closings = {"The bells rang for seven days, and the magic in the land grew gentle again.",
                     "From that day on, the forest whispered their name with kindness.",
                     "And if you listen closely on a windy night, you can still hear the tale.",
                     "Peace settled over the land like fresh snow."},
        .tadjs = {"Silver", "Forgotten", "Whispering", "Last"},
        .tnouns = {"Crown", "Dragon", "Key", "Tower"},
    },
    {
        .label = "Science fiction",
        .keys = {"science fiction", "sci-fi", "scifi", "sci fi", "space", "cyberpunk", "futur",
                 "robot", "alien", "galac", "dystop"},
        .heroes = {"a cargo pilot with debts on three planets",
                   "a maintenance robot that wants to paint",
                   "a young engineer on a generation ship",
                   "a linguist who dreams in alien grammar"},
        .settings = {"the orbital station Kepler Nine",
                     "a mining colony on the dark side of Europa",
                     "the neon-soaked megacity of New Lagos", "the generation ship Perihelion"},
        .objects = {"data crystal that pulsed like a heartbeat", "star chart no human had drawn",
                    "broken android head that still whispered coordinates",
                    "distress beacon from a ship lost a century ago"},
        .threats = {"the Directorate", "a rogue AI called MERIDIAN",
                    "the swarm waiting beyond the asteroid belt",
                    "the corporation that owned the oxygen"},
        .goals = {"send a message back to Earth", "shut down the rogue AI",
                  "reach the edge of the known galaxy",
                  "find the colony that vanished from every map"},
        .allies = {"a smuggler with a patched-up ship",
                   "a maintenance drone with a sense of humour",
                   "a scientist who had been declared dead",
                   "an alien diplomat who spoke in colours"},
        .places = {"the abandoned observation deck", "the dead zone beyond the outer ring",
                   "a derelict freighter drifting in silence", "the server vaults under the city"},
        .moods = {"Somewhere in the walls, the life-support fans hummed their endless lullaby.",
                  "Outside the viewport, the stars did not twinkle; they only watched.",
                  "Every screen in the corridor flickered at the same moment.",
                  "The recycled air tasted of metal and secrets."},
        .twists = {"The ship's computer answered a question nobody had asked aloud.",
                   "^O projected a hologram of a place that should not exist.",
                   "Alarms howled as the station lost gravity for eleven long seconds.",
                   "An encrypted message arrived, signed by %N and dated thirty years in the "
                   "future."},
        .climaxes = {"^N plugged %O into the core, and every system went dark, then woke up free.",
                     "In the silence of the vacuum, %N outsmarted %T with a single line of code.",
                     "The reactor roared, the hull groaned, and %N steered them through the storm "
                     "of fire.",
                     "^N faced %T and offered it the one thing it had never been given: a choice."},
        .closings = {"Far below, the lights of the colony came on one by one, like a new "
                     "constellation.",
                     "The logbook recorded the day in a single line: mission complete.",
                     "And the ship sailed on through the quiet dark, carrying a little more hope "
                     "than before.",
                     "Somewhere among the stars, a signal went out that said only: we made it."},
        .tadjs = {"Silent", "Last", "Broken", "Distant"},
        .tnouns = {"Signal", "Orbit", "Star", "Horizon"},
    },
    {
        .label = "Mystery",
        .keys = {"mystery", "myster", "detective", "crime", "noir", "whodunit", "sleuth", "murder",
                 "investigat", "cozy"},
        .heroes = {"a retired detective who cannot stop noticing things", "a night-shift librarian",
                   "a young reporter with a borrowed camera", "a locksmith who knows too much"},
        .settings = {"the fog-bound town of Ashcombe", "a grand hotel on the edge of the cliffs",
                     "a rainy city where the streetlights never quite worked",
                     "a sleepy seaside village with too many secrets"},
        .objects = {"torn train ticket", "letter written in invisible ink",
                    "pocket watch stopped at a quarter past midnight",
                    "old photograph with one face scratched out"},
        .threats = {"the thief who signed every crime with a chess piece",
                    "the man in the grey coat", "someone who knew every secret in town",
                    "the real culprit"},
        .goals = {"find out who had written the anonymous letters",
                  "solve the riddle of the locked room", "clear an innocent friend's name",
                  "discover what had happened on the night of the storm"},
        .allies = {"a nervous butler", "a sharp-eyed old lady who missed nothing",
                   "a police inspector who owed them a favour",
                   "a street kid who knew every alley"},
        .places = {"the locked study on the second floor", "the empty train station",
                   "the lighthouse that had been dark for years",
                   "the back room of a closed bookshop"},
        .moods = {"Rain tapped against the windows like impatient fingers.",
                  "Somewhere a door closed softly, and then the house was silent.",
                  "Every clock in the room seemed to tick a little too loudly.",
                  "The fog pressed against the glass as if it wanted to come in."},
        .twists = {"A second clue turned up, and it pointed in exactly the opposite direction.",
                   "Someone had been in the room before them and had left the lamp still warm.",
                   "The alibi that everyone trusted began to crack.",
                   "^O held a detail no one else had noticed: a tiny initial, carefully hidden."},
        .climaxes = {"^N gathered everyone in the drawing room and, one clue at a time, revealed "
                     "the truth.",
                     "The last piece fell into place when %N looked again at %O.",
                     "Cornered at last, %T confessed, and the whole tangled story came out.",
                     "^N set a careful trap, and %T walked right into it."},
        .closings =
            {"The case was closed, and for the first time in weeks, the town slept soundly.",
             "Outside, the fog lifted, as if it too had been waiting for the answer.",
             "The file went back into the drawer, marked in neat letters: solved.",
             "And the rain, at last, stopped."},
        .tadjs = {"Midnight", "Silent", "Missing", "Last"},
        .tnouns = {"Clue", "Witness", "Letter", "Alibi"},
    },
    {
        .label = "Horror",
        .keys = {"horror", "ghost", "gothic", "scary", "haunt", "creepy", "spooky", "terror",
                 "zombie", "vampire", "lovecraft", "paranormal"},
        .heroes = {"a night nurse on an empty ward", "a teenager who moved into the wrong house",
                   "a priest who stopped believing", "a radio host who takes one call too many"},
        .settings = {"an old house at the end of Hollow Lane",
                     "a village that did not appear on any map",
                     "an abandoned asylum above the marshes",
                     "a snowbound lodge miles from the nearest road"},
        .objects = {"music box that played by itself", "diary with the last page torn out",
                    "porcelain doll whose eyes followed every movement",
                    "mirror that showed the room a second too late"},
        .threats = {"the thing in the cellar", "the woman in the white dress",
                    "whatever was knocking inside the walls", "the hungry dark beneath the house"},
        .goals = {"get out of the house before midnight",
                  "find out what happened to the last family", "lay the restless spirit to rest",
                  "survive until the sun came up"},
        .allies = {"a medium who refused to take money", "a terrified neighbour",
                   "an old caretaker who knew the house's history",
                   "a child who could see things others could not"},
        .places = {"the cellar stairs", "the bell tower of the deserted church",
                   "the long corridor where the lights kept failing",
                   "the overgrown graveyard behind the chapel"},
        .moods = {"The floorboards creaked, although no one was walking on them.",
                  "Somewhere in the house, a child began to hum.",
                  "The temperature dropped so suddenly that every breath turned to mist.",
                  "The candle flame bent sideways, pointing at the door."},
        .twists = {"A handprint appeared on the misted window, from the outside.",
                   "The phone rang, and the voice on the line was %N's own.",
                   "Every door in the hallway slammed shut at once.",
                   "^O was back on the table, although they had buried it that morning."},
        .climaxes = {"^N lit the last candle and spoke the name of %T aloud, and the house "
                     "screamed.",
                     "With %O in hand, %N walked into the dark and did not look back.",
                     "The walls shook, the windows burst, and then %T was dragged back into the "
                     "shadows it had come from.",
                     "^N opened the door that should never have been opened, and closed it again "
                     "forever."},
        .closings = {"When dawn came, the house stood quiet, and it has stayed quiet ever since.",
                     "They never spoke of that night again, but they always left a light on.",
                     "The birds returned to the garden, and that is how they knew it was truly "
                     "over.",
                     "Only the wind still whispers there now, and it means no harm."},
        .tadjs = {"Hollow", "Silent", "Crimson", "Last"},
        .tnouns = {"House", "Whisper", "Door", "Night"},
    },
    {
        .label = "Romance",
        .keys = {"romance", "romantic", "love", "romcom", "rom-com"},
        .heroes = {"a florist who has sworn off love", "a violinist in a city she does not know",
                   "a baker who writes poems on cake boxes",
                   "a ferry captain with a broken compass"},
        .settings = {"a little café on the corner of Rue des Lilas",
                     "a seaside town in the last week of summer", "a vineyard in the golden hills",
                     "a snowy mountain inn at Christmas"},
        .objects = {"letter that had never been sent",
                    "pressed flower between the pages of a second-hand book",
                    "lost glove left on a park bench", "old photograph of two strangers laughing"},
        .threats = {"a jealous rival", "the disapproving grandmother", "a charming but scheming ex",
                    "the rival café owner across the street"},
        .goals = {"say the words they had kept to themselves for years",
                  "win back a love they had lost", "find the writer of the unsigned letters",
                  "choose between their dream and their heart"},
        .allies = {"a matchmaking aunt", "a best friend with terrible advice",
                   "a wise old bookseller", "a dog who clearly had opinions"},
        .places = {"the pier at sunset", "a crowded dance hall", "a rooftop garden above the city",
                   "the train platform in the rain"},
        .moods = {"The evening light turned everything the colour of honey.",
                  "Somewhere a piano was playing, slightly out of tune and perfectly lovely.",
                  "The air smelled of coffee and fresh rain.",
                  "Hearts were beating a little faster than anyone would admit."},
        .twists = {"A misunderstanding, small as a misplaced word, grew into a storm.",
                   "Two hands touched by accident, and neither one pulled away.",
                   "An old flame arrived in town without warning.",
                   "^O finally revealed who had written it, and everything changed."},
        .climaxes = {"^N stopped running, turned around, and said the words at last.",
                     "In front of everyone, %N gave back %O, and with it, their heart.",
                     "The rain poured, the music swelled, and %N did not care who was watching.",
                     "^T no longer mattered; only love did."},
        .closings = {"A year later, they came back to the same spot, and it felt like coming home.",
                     "Every summer after that, the town told the story of how they found each "
                     "other.",
                     "They lived, not perfectly, but happily, which is better.",
                     "Some stories end with a kiss; this one began with one."},
        .tadjs = {"Summer", "Unsent", "Second", "Secret"},
        .tnouns = {"Letter", "Heart", "Promise", "Waltz"},
    },
    {
        .label = "Adventure",
        .keys = {"adventure", "quest", "pirate", "explor", "treasure", "action", "jungle",
                 "expedition", "survival"},
        .heroes = {"a cabin boy who can read the stars", "a treasure hunter with one lucky coin",
                   "a botanist lost in the jungle", "a mountain guide who never turned back"},
        .settings = {"the harbour town of Port Salvage", "the edge of an uncharted jungle",
                     "a pirate island shaped like a sleeping giant",
                     "the foot of a mountain no one had ever climbed"},
        .objects = {"half of an ancient treasure map",
                    "compass that pointed to what you wanted most", "golden idol with ruby eyes",
                    "captain's logbook sealed with wax"},
        .threats = {"the pirate captain Blackwater", "a rival expedition with better maps",
                    "the pirate queen they called the Widowmaker",
                    "the stone guardian of the lost temple"},
        .goals = {"find the treasure of the lost temple", "reach the summit before the storm",
                  "sail to the island at the end of the map", "rescue a friend held for ransom"},
        .allies = {"a one-eyed parrot with a vocabulary of insults", "a retired sea captain",
                   "a guide who spoke seven languages", "a stowaway who turned out to be brave"},
        .places = {"a rope bridge over a roaring gorge", "the mouth of a smoking volcano",
                   "the wreck of a galleon on the reef", "a hidden waterfall"},
        .moods = {"The wind tasted of salt and distant places.",
                  "Far ahead, the horizon promised something no map could show.",
                  "The boots were muddy, the hearts were light, and the sun was high.",
                  "Drums echoed from somewhere deep in the trees."},
        .twists = {"The ground gave way, and they slid into a hidden chamber full of carvings.",
                   "A cannon shot split the air: the rival ship had found them.",
                   "^O led them not to treasure but to a sealed door with a riddle.",
                   "The bridge snapped behind them; there was no way back now."},
        .climaxes = {"^N swung across the chasm, grabbed %O, and landed just as the temple "
                     "collapsed.",
                     "In a clash of swords on the burning deck, %N finally outfought %T.",
                     "^N read the last line of the riddle, and the treasure chamber rumbled open.",
                     "With the storm roaring around them, %N steered straight through the gap in "
                     "the rocks."},
        .closings = {"They sailed home with full pockets, fuller hearts and a story worth telling.",
                     "The map went into a frame above the fireplace, its last secret solved.",
                     "By the next morning, %N already had an eye on the horizon and what lay "
                     "beyond it.",
                     "The adventure was over, but the friendships it made would last a lifetime."},
        .tadjs = {"Lost", "Golden", "Hidden", "Last"},
        .tnouns = {"Map", "Temple", "Island", "Compass"},
    },
    {
        .label = "Fairy tale",
        .keys = {"fairy", "fable", "folk", "bedtime", "children", "kids", "nursery", "once upon"},
        .heroes = {"a miller's youngest daughter", "a clever goose girl",
                   "a tailor who sews with moonbeams", "a little hedgehog with big dreams"},
        .settings = {"a kingdom beyond seven hills",
                     "a cottage at the edge of the enchanted forest",
                     "a castle made of sugar and glass",
                     "a village where the animals could talk on Sundays"},
        .objects = {"golden apple", "pair of shoes that danced by themselves",
                    "magic bean that glowed like a star", "tiny silver bell"},
        .threats = {"the wicked queen", "a grumpy troll under the bridge",
                    "the wolf who wore a velvet coat", "the sorcerer of the frozen tower"},
        .goals = {"rescue the sleeping prince", "bring back the sun that the giant had stolen",
                  "find the well that grants one wish", "break the spell on the royal swans"},
        .allies = {"a kindly fairy godmother", "a frog who had once been a king",
                   "three clever mice", "a gentle giant with a very small voice"},
        .places = {"the gingerbread house", "the bridge of the grumpy troll",
                   "the top of the glass mountain", "the garden where the roses sang"},
        .moods = {"Even the birds stopped singing to listen.",
                  "The moon smiled down, round and kind as a grandmother.",
                  "Everything sparkled, as things do in stories.",
                  "The wind carried a tune that only children could hear."},
        .twists = {"A troll asked a riddle, and only the right answer would let them pass.",
                   "At the stroke of midnight, the spell began to fade.",
                   "^O rolled away on its own, leading them deeper into the woods.",
                   "A little bird sang a warning: %T was coming."},
        .climaxes =
            {"^N answered the third riddle, and %T burst into a cloud of harmless smoke.",
             "With a gentle kiss and a brave heart, %N broke the spell at last.",
             "^N outwitted %T with nothing but kindness and %O.",
             "The bell rang three times, and every enchantment in the kingdom came undone."},
        .closings = {"And they all lived happily ever after.",
                     "There was a feast that lasted three days, and everyone was invited, even the "
                     "troll.",
                     "And if they have not died, they are living happily still.",
                     "Snip, snap, snout, this tale's told out."},
        .tadjs = {"Golden", "Enchanted", "Little", "Silver"},
        .tnouns = {"Apple", "Bell", "Slipper", "Castle"},
    },
    {
        .label = "Comedy",
        .keys = {"comedy", "comedic", "humor", "humour", "funny", "comic", "satire", "parody",
                 "silly", "farce", "sitcom"},
        .heroes = {"an accountant who accidentally became mayor",
                   "a wedding planner allergic to flowers", "a very serious penguin",
                   "a magician whose tricks only work on Tuesdays"},
        .settings = {"the nosy little town of Little Mumbling",
                     "an office where the coffee machine ruled everyone",
                     "a cruise ship with a suspiciously cheerful captain",
                     "a village preparing for its annual cheese festival"},
        .objects = {"rubber chicken of unknown origin", "wrong suitcase",
                    "cake that was definitely not for eating",
                    "envelope marked DO NOT OPEN (SERIOUSLY)"},
        .threats = {"the town's most competitive pie champion", "an extremely polite tax inspector",
                    "a goat with a grudge", "the mayor's terrifying mother-in-law"},
        .goals = {"win the cheese festival", "return the wrong suitcase before anyone noticed",
                  "survive the family reunion", "keep the secret until Friday"},
        .allies = {"a cousin with a terrible plan", "a parrot that only repeated the wrong things",
                   "a retired stuntman", "the world's least convincing master of disguise"},
        .places = {"the town hall in the middle of a meeting",
                   "a wedding that was going very badly", "the cheese tent",
                   "the back of a runaway ice-cream van"},
        .moods = {"It was, by all accounts, a perfectly normal day, which should have been the "
                  "first warning.",
                  "Somewhere, a goat bleated in a way that sounded personal.",
                  "The plan was simple, which is to say it was doomed.",
                  "Everyone agreed it could not possibly get any worse, and then it did."},
        .twists = {"The disguise fell off at the worst possible moment.",
                   "^O went off like a confetti cannon in the middle of the town hall.",
                   "Someone had swapped the labels, and nobody knew which jar held the glue.",
                   "The goat ate the only copy of the plan."},
        .climaxes =
            {"^N tripped, flew across the stage, and landed exactly where the plan had "
             "needed them.",
             "In the chaos, %T slipped on a banana peel that %N had definitely not planted.",
             "^N unveiled %O, and the entire town burst out laughing, including %T.",
             "By sheer accident, %N did everything right."},
        .closings = {"Nobody ever found out where the rubber chicken came from, and that was fine.",
                     "And the goat, finally, forgave everyone.",
                     "It was the best worst day of their lives.",
                     "The town still talks about it, mostly with tears of laughter."},
        .tadjs = {"Great", "Terrible", "Accidental", "Slightly Ridiculous"},
        .tnouns = {"Mix-up", "Goat", "Disaster", "Festival"},
    },
    {
        .label = "Western",
        .keys = {"western", "cowboy", "frontier", "wild west", "outlaw", "gunslinger", "ranch",
                 "sheriff"},
        .heroes = {"a tired sheriff one week from retirement", "a cattle drover with a secret",
                   "a schoolteacher who can outshoot anyone", "a young stagecoach driver"},
        .settings = {"the dusty town of Redemption Creek",
                     "a lonely ranch on the edge of the desert",
                     "a railroad camp on the high plains",
                     "a border town where the law was only a rumour"},
        .objects = {"wanted poster with a familiar face", "silver dollar with a bullet hole in it",
                    "deed to a gold claim", "battered sheriff's badge"},
        .threats = {"the Dalton gang", "a railroad baron who wanted the land",
                    "the outlaw they called the Preacher",
                    "a cattle rustler named Black Jack Kane"},
        .goals = {"bring the outlaws to justice", "save the ranch from the railroad",
                  "deliver the gold to Sacramento", "find the man who burned down the homestead"},
        .allies = {"an old prospector with a mule named Biscuit",
                   "a quiet scout who missed nothing", "a saloon pianist who heard everything",
                   "a deputy who had never fired a gun"},
        .places = {"the saloon on Main Street", "a canyon full of echoes",
                   "the water tower by the railway", "an abandoned silver mine"},
        .moods = {"The wind rolled a tumbleweed down the empty street.",
                  "The sun hung over the desert like a brass coin.",
                  "Somewhere a horse snorted, and the whole town seemed to hold its breath.",
                  "Dust settled on everything, even on the silence."},
        .twists = {"Hoofbeats thundered in the distance: riders were coming, and fast.",
                   "The stagecoach arrived empty, its strongbox forced open.",
                   "A stranger walked into the saloon, and the piano stopped playing.",
                   "^O turned out to be a forgery, and a good one."},
        .climaxes = {"At high noon, %N faced %T in the middle of the street, and it was over "
                     "in a heartbeat.",
                     "^N cut the rope, jumped onto the moving train and brought it to a screeching "
                     "halt.",
                     "With %O in hand, %N rode into the canyon and sprang the trap on %T.",
                     "The shot echoed off the canyon walls, and then there was only the wind."},
        .closings = {"^N rode off toward the setting sun, and the town never forgot them.",
                     "The next morning, the saloon opened as usual, and someone played a happier "
                     "tune.",
                     "The badge was hung up at last, and the valley grew green again.",
                     "And the town, at last, earned its peace."},
        .tadjs = {"Last", "Dusty", "Silver", "Lonesome"},
        .tnouns = {"Badge", "Trail", "Sundown", "Rider"},
    },
    {
        .label = "Thriller",
        .keys = {"thriller", "spy", "espionage", "suspense", "heist", "conspiracy", "assassin",
                 "political", "techno"},
        .heroes = {"an analyst who saw one file too many",
                   "a retired spy pulled back for one last job",
                   "a bike courier who delivered the wrong package", "a hacker with a conscience"},
        .settings = {"rain-slick Berlin at two in the morning",
                     "a glass tower above the financial district",
                     "a night train crossing the Alps", "an embassy ball in Vienna"},
        .objects = {"encrypted USB drive", "briefcase handcuffed to a dead man's wrist",
                    "phone that would not stop ringing", "list of names that should not exist"},
        .threats = {"an agency that officially did not exist", "a killer known only as the Tailor",
                    "the man who ran the city from the shadows",
                    "a conspiracy that reached all the way to the top"},
        .goals = {"expose the conspiracy before the summit", "get the files across the border",
                  "find the mole inside the agency", "stop the bomb before midnight"},
        .allies = {"a journalist who trusted no one", "a former handler with a debt to repay",
                   "a hotel porter with sharp eyes", "a hacker who lived on energy drinks"},
        .places = {"an underground parking garage", "the roof of a moving train",
                   "a safe house that was no longer safe", "the server room of the embassy"},
        .moods = {"Every car that passed seemed to slow down for a moment too long.",
                  "The clock on the wall counted down with a patience that felt cruel.",
                  "Somebody was watching; the question was who.",
                  "The city hummed, indifferent to the danger moving through it."},
        .twists = {"The phone buzzed with a two-word message: they know.",
                   "The contact was already dead when they arrived, and sirens were on the way.",
                   "^O held a name no one expected: someone on their own side.",
                   "The safe house door was open, and the lights were off."},
        .climaxes = {"With seconds left on the clock, %N cut the right wire.",
                     "^N walked into the meeting, placed %O on the table, and watched %T fall "
                     "apart.",
                     "The chase ended on a rooftop, where %N finally turned the tables on %T.",
                     "Every file went public at once, and %T had nowhere left to hide."},
        .closings =
            {"The headlines the next morning told only half the story, and that was enough.",
             "^N disappeared into the crowd, just another face in the city.",
             "The case was sealed for fifty years, but the truth was out.",
             "For the first time in weeks, they slept through the night."},
        .tadjs = {"Silent", "Final", "Midnight", "Hidden"},
        .tnouns = {"Protocol", "Asset", "Cipher", "Hour"},
    },
    {
        .label = "Story",
        .keys = {NULL},
        .heroes = {"a curious traveller", "a shy inventor", "a girl who collects lost things",
                   "an old fisherman with one last wish"},
        .settings = {"a small town by a wide river", "a city that never quite slept",
                     "a house at the top of a windy hill", "a quiet island far from the mainland"},
        .objects = {"old wooden box with a brass lock", "letter with no return address",
                    "key that fitted no door in the house",
                    "strange stone that was warm to the touch"},
        .threats = {"a stranger with a cold smile", "someone who wanted the secret buried",
                    "a rival who would stop at nothing",
                    "the man who had been following them for days"},
        .goals = {"find out where the letter had come from", "keep a promise made long ago",
                  "bring everyone home safely", "uncover the truth about the family secret"},
        .allies = {"a kind old neighbour", "a stray dog that refused to leave",
                   "a librarian who knew every story in town", "a childhood friend"},
        .places = {"the old lighthouse", "a crowded market square", "the attic under the roof",
                   "the end of the long road"},
        .moods = {"The afternoon light lay warm and golden across the rooftops.",
                  "Somewhere nearby, someone was whistling an old tune.",
                  "It was the kind of quiet that comes just before everything changes.",
                  "The wind carried the smell of rain and of something new."},
        .twists = {"A door that had always been locked stood open.",
                   "^O turned out to hold a message, written long ago.",
                   "Someone had been leaving clues, and they had been meant for %N all along.",
                   "The road ahead split in two, and both paths looked strangely familiar."},
        .climaxes = {"^N took a deep breath, stepped forward, and faced %T at last.",
                     "Everything %N had learned came together in one brave moment.",
                     "With %O in hand, %N finally understood what had to be done, and did it.",
                     "^N chose courage over fear, and that made all the difference."},
        .closings = {"And that was the end of the beginning of everything that came after.",
                     "Years later, they would still tell the story, and smile.",
                     "The sun went down, the lights came on, and all was well.",
                     "It was over, and every step of it had been worth it."},
        .tadjs = {"Hidden", "Long", "Quiet", "Last"},
        .tnouns = {"Road", "Secret", "Promise", "Door"},
    },
};

#define OFFLINE_GENERIC (&offline_banks[COUNT(offline_banks) - 1])
#define OFFLINE_NAMED_BANKS (COUNT(offline_banks) - 1)

/*
 * Sentence templates shared by every genre. Placeholders (offline_expand): %X inserts
 * variable X, ^X inserts it with its first letter capitalised (sentence start).
 *   W the characters text   N a name (or "our hero")  S setting   O "the" + object
 *   Q "a"/"an" + object      T threat    G goal    A ally    P place    E a time phrase
 *   L the opening line       I the user input       H hero   B genre label
 *   J, K title adjective and noun
 * %N may be one person or several: the templates use "they" and avoid "was"/"were".
 */
static const char *const OPEN_AFTER_LINE[] = {
    "That was how it all began, in %S.",
    "It happened in %S, where such things were not supposed to happen.",
    "Nobody in %S would ever forget that day.",
    "Such was the beginning, in %S, of a story no one had expected.",
};
static const char *const OPEN_SETTING[] = {
    "Once, in %S, there came a morning that started like any other.",
    "In %S, the days had always followed one another quietly.",
    "Everyone in %S believed that nothing there ever changed.",
    "Not so long ago, in %S, a story was waiting to begin.",
};
static const char *const OPEN_WHO[] = {
    "This is the story of %W.",
    "^W had always wanted more than an ordinary life.",
    "^W could feel that something was about to happen.",
    "^W had no idea how much was about to change.",
};
/* For a cast with commas ("Ada, a pilot"): the cast ends the sentence. */
static const char *const OPEN_WHO_LIST[] = {
    "This is the story of %W.",
    "Our story follows %W.",
};
static const char *const OPEN_FIND[] = {
    "Then %N found %Q, hidden where no one had thought to look.",
    "That was the day %N came across %Q.",
    ("Tucked away where no one would think to look lay %Q, and %N picked it up without a "
     "second thought."),
    "By pure chance, %N stumbled upon %Q.",
};
static const char *const OPEN_THREAT[] = {
    "Old stories said that %O was tied to %T.",
    "Before long it was clear that %T wanted it too.",
    "But %T had been waiting a long time for exactly this.",
    "Somewhere not far away, %T had begun to stir.",
};
static const char *const OPEN_HOOK[] = {
    "If %N wanted to %G, there was no time to lose.",
    "So %N made a decision: they would %G, whatever it cost.",
    "Now %N had only one choice left: to %G.",
    "And so %N set out to %G, not knowing what waited along the way.",
};
static const char *const CONT_INPUT[] = {
    "A thought took hold of %N and would not let go: \xe2\x80\x9c%I\xe2\x80\x9d",
    "So it was decided: %I",
    "What happened next surprised everyone: %I",
    "^N listened to the quiet voice that said: \xe2\x80\x9c%I\xe2\x80\x9d",
};
static const char *const CONT_FOLLOW[] = {
    "And that is exactly what happened.",
    "There was no stopping it now.",
    "It changed everything.",
    "No one, least of all %T, saw it coming.",
};
static const char *const WHEN[] = {
    "By the next morning", "Not long after",          "That same night",
    "A few hours later",   "When the sun rose again", "Before anyone could stop them",
};
static const char *const CONT_PLACE[] = {
    "%E, %N reached %P.",
    "%E, the trail led %N to %P.",
    "%E, %N ended up at %P.",
    "%E, %N made their way to %P.",
};
static const char *const CONT_ALLY[] = {
    "There %N met %A, who seemed to know more than they let on.",
    "^A was waiting there and offered to help, for a price.",
    "It was there that %A joined them, asking no questions.",
    "^A appeared out of nowhere with a warning.",
};
static const char *const CONT_PROGRESS[] = {
    "So much had happened since the beginning, and %N felt changed by all of it.",
    "Looking back, %N could hardly believe how far they had come.",
};
static const char *const CONT_TENSION[] = {
    "Yet %T was never far behind.",
    "Every step brought %N closer to %T.",
    "^O felt heavier than ever, as if it knew what was coming.",
    "Somewhere, %T was making plans of their own.",
};
static const char *const CONT_HOOK[] = {
    "Would it be enough to %G?",
    "The real test was still to come.",
    "And that was only the beginning of the trouble.",
};
static const char *const END_INTRO[] = {
    "In the end, everything came down to %O.",
    "At last, the moment %N had been waiting for arrived.",
    "It all ended at %P, where it had been meant to end from the start.",
    "There was no turning back now.",
};
static const char *const END_RESOLVE[] = {
    "When it was over, %T was gone, and the silence that followed felt like a long breath out.",
    "^T would trouble no one ever again.",
    "Just like that, the danger passed, and everything that had been broken began to mend.",
    "And when the dust settled, %N stood tall, tired and unafraid.",
};
static const char *const END_AFTER[] = {
    "^N returned to %S, changed in ways that were hard to put into words.",
    "Back in %S, life slowly found its rhythm again, but %N never forgot what had happened.",
    "In %S, people began to tell the story before it had even finished.",
    "^N had set out to %G, and in the end they did.",
};
static const char *const TITLE_NAMED[] = {
    "%N and the %J %K",
    "%N and the %K",
    "The %J %K",
    "Beyond the %J %K",
};
static const char *const TITLE_PLAIN[] = {
    "The %J %K",
    "Beyond the %J %K",
    "Song of the %J %K",
    "The %K at the Edge of Everything",
};
static const char *const SUGGEST[] = {
    "A hidden trail leads %N to %P.",
    "^A arrives with news about %T.",
    "^O reveals a power no one expected.",
    "^N must choose between keeping %O and saving a friend.",
    "A secret about %T comes to light.",
    "^N must try to %G, but the plan goes badly wrong.",
    "An old enemy returns to %S.",
    "^N must face the truth about %T.",
    "A storm forces %N to take shelter at %P.",
    "^O is stolen, and %N must win it back.",
};
static const char *const IDEAS[OFFLINE_PICKS] = {
    "%B: %H must %G, but %T will stand in the way.",
    "%B: when %T comes calling, %H has to %G.",
    "%B: %H has one night to %G before %T can find them.",
};

/* Capitalised words in a cast that are not names; honorifics join the next word. */
static const char *const NOT_NAMES[] = {
    "A",    "An",   "The",   "And",  "Or",    "But",   "Of",   "In",    "On",   "At",
    "My",   "Our",  "Their", "His",  "Her",   "Its",   "Two",  "Three", "Four", "Five",
    "Some", "One",  "This",  "That", "These", "Those", "With", "Who",   "When", "Then",
    "Also", "Plus", "Both",  "All",  "Many",  "Every", "Once", "It",    "He",   "She",
    "They", "We",   "You",   "Not",  "No",    "For",   "From", "To",    "By",   "As",
};
static const char *const HONORIFICS[] = {
    "Captain", "Dr",      "Doctor", "Professor", "Mr",       "Mrs",     "Ms",       "Miss",
    "Sir",     "Lady",    "Lord",   "King",      "Queen",    "Prince",  "Princess", "Detective",
    "Agent",   "Sheriff", "Aunt",   "Uncle",     "Grandma",  "Grandpa", "Old",      "Young",
    "Little",  "Big",     "Saint",  "Count",     "Countess",
};

/* ---- UTF-8 ---------------------------------------------------------------------- */

/* Length (1..4) of the valid UTF-8 sequence at s with its code point, or 0. */
static size_t offline_utf8(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, min = 0x80, *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, min = 0x800, *cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, min = 0x10000, *cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return n;
}

/* Characters that must not reach the text raw: C0, DEL, C1, line and paragraph
 * separators, bidirectional controls, BOM, interlinear annotations. */
static bool offline_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
           cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);
}

/* Characters (code points) in the first len bytes of the valid UTF-8 string s. */
static size_t offline_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xc0) != 0x80;
    return n;
}

/*
 * One pass of offline_clean: writes to dst when it is not NULL; returns the bytes of
 * the result. Stops before the character that would pass max (then *cut).
 */
static size_t offline_clean_pass(const char *src, size_t max, char *dst, bool *cut)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t at = 0, chars = 0;
    bool space = false;

    *cut = false;
    while (*p != '\0') {
        uint32_t cp = ' ';
        size_t n = offline_utf8(p, &cp);
        if (n == 0) /* invalid byte: a space */
            n = 1, cp = ' ';
        if (cp == ' ' || offline_is_control(cp)) {
            space = at > 0;
            p += n;
            continue;
        }
        if (chars + space + 1 > max) {
            *cut = true;
            break;
        }
        if (space) {
            if (dst != NULL)
                dst[at] = ' ';
            at++, chars++, space = false;
        }
        if (dst != NULL)
            memcpy(dst + at, p, n);
        at += n, chars++, p += n;
    }
    return at;
}

static bool offline_has_suffix(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* Whether s ends like a sentence, after any closing quotes or brackets. */
static bool offline_ends_sentence(const char *s)
{
    static const char *const closers[] = {
        "\"",           "'",           ")", "]", "\xe2\x80\x9d", "\xe2\x80\x99", "\xc2\xbb",
        "\xe3\x80\x8d", "\xe3\x80\x8f"};
    static const char *const stops[] = {
        ".", "!", "?", OFFLINE_ELLIPSIS, "\xe3\x80\x82", "\xef\xbc\x81", "\xef\xbc\x9f"};
    size_t len = strlen(s);
    bool again = true;

    while (again && len > 0) {
        again = false;
        for (size_t i = 0; i < COUNT(closers); i++)
            if (offline_has_suffix(s, len, closers[i])) {
                len -= strlen(closers[i]);
                again = true;
                break;
            }
    }
    for (size_t i = 0; i < COUNT(stops); i++)
        if (offline_has_suffix(s, len, stops[i]))
            return true;
    return false;
}

/* Cuts the cleaned, cut-short s (at most max characters) so that "…" fits after it. */
static void offline_cut_word(char *s, size_t max)
{
    size_t len = strlen(s);
    char *sp = strrchr(s, ' ');

    if (sp != NULL && offline_chars(s, (size_t)(sp - s)) >= max / 2) {
        len = (size_t)(sp - s);
    } else if (len > 0) { /* one long word: drop its last character */
        len--;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    while (len > 0 && strchr(" ,;:-", s[len - 1]) != NULL)
        len--;
    s[len] = '\0';
}

/*
 * A new string: src (NULL reads as "") with control characters, line breaks and invalid
 * bytes turned to spaces, runs of spaces collapsed, trimmed, and at most max characters
 * (max >= 2): a longer text is cut at a word boundary (or a character boundary) and
 * ends with "…". With sentence, a text that does not end like a sentence gets a ".".
 * NULL when memory ran out.
 */
static char *offline_clean(const char *src, size_t max, bool sentence)
{
    bool cut;
    size_t len = offline_clean_pass(src != NULL ? src : "", max, NULL, &cut);
    char *s = malloc(len + sizeof OFFLINE_ELLIPSIS); /* room for "…" or "." */

    if (s == NULL)
        return NULL;
    offline_clean_pass(src != NULL ? src : "", max, s, &cut);
    s[len] = '\0';
    if (cut) {
        offline_cut_word(s, max);
        len = strlen(s);
        memcpy(s + len, OFFLINE_ELLIPSIS, sizeof OFFLINE_ELLIPSIS);
    } else if (sentence && len > 0 && !offline_ends_sentence(s)) {
        memcpy(s + len, ".", 2);
    }
    return s;
}

/*
 * Makes s (valid UTF-8) fit max_bytes bytes and max_chars characters, cutting at a
 * character boundary and ending with "…". A guard: the templates are sized so that
 * it never cuts.
 */
static void offline_fit(char *s, size_t max_bytes, size_t max_chars)
{
    size_t len = strlen(s), keep = 0, chars = 0;

    if (len <= max_bytes && offline_chars(s, len) <= max_chars)
        return;
    while (keep < len) {
        size_t next = keep + 1;
        while (next < len && ((unsigned char)s[next] & 0xc0) == 0x80)
            next++;
        if (next + strlen(OFFLINE_ELLIPSIS) > max_bytes || chars + 2 > max_chars)
            break;
        keep = next, chars++;
    }
    memcpy(s + keep, OFFLINE_ELLIPSIS, sizeof OFFLINE_ELLIPSIS);
}

/* ---- the seeds --------------------------------------------------------------------- */

/* Feeds a presence flag, the 64-bit little-endian length and the bytes of s. */
static void offline_hash_str(crypto_generichash_state *st, const char *s)
{
    size_t len = s != NULL ? strlen(s) : 0;
    unsigned char head[9];

    head[0] = s != NULL;
    for (int i = 0; i < 8; i++)
        head[1 + i] = (unsigned char)((uint64_t)len >> (8 * i));
    crypto_generichash_update(st, head, sizeof head);
    if (len > 0)
        crypto_generichash_update(st, (const unsigned char *)s, len);
}

static uint64_t offline_hash_final(crypto_generichash_state *st)
{
    unsigned char h[crypto_generichash_BYTES];
    uint64_t seed = 0;

    crypto_generichash_final(st, h, sizeof h);
    for (int i = 0; i < 8; i++)
        seed |= (uint64_t)h[i] << (8 * i);
    return seed;
}

/* The story seed: what stays the same through every part of one story. */
static uint64_t offline_story_seed(const struct tale_request *rq)
{
    static const char domain[] = "story-gateway offline story v1";
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES);
    offline_hash_str(&st, domain);
    offline_hash_str(&st, rq->genre);
    offline_hash_str(&st, rq->characters);
    offline_hash_str(&st, rq->opening_line);
    return offline_hash_final(&st);
}

/* The part seed: every field of the request. */
static uint64_t offline_part_seed(const struct tale_request *rq)
{
    static const char domain[] = "story-gateway offline part v1";
    crypto_generichash_state st;
    size_t nparts = rq->parts != NULL ? rq->nparts : 0;
    unsigned char head[9];

    crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES);
    offline_hash_str(&st, domain);
    head[0] = (unsigned char)rq->kind;
    for (int i = 0; i < 8; i++)
        head[1 + i] = (unsigned char)((uint64_t)nparts >> (8 * i));
    crypto_generichash_update(&st, head, sizeof head);
    offline_hash_str(&st, rq->genre);
    offline_hash_str(&st, rq->characters);
    offline_hash_str(&st, rq->opening_line);
    offline_hash_str(&st, rq->title);
    for (size_t i = 0; i < nparts; i++)
        offline_hash_str(&st, rq->parts[i]);
    offline_hash_str(&st, rq->user_input);
    return offline_hash_final(&st);
}

/* splitmix64: a deterministic stream of choices from a seed. */
struct offline_rng {
    uint64_t s;
};

static size_t offline_pick(struct offline_rng *r, size_t n)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)((z ^ (z >> 31)) % n);
}

#define PICK(r, a) ((a)[offline_pick((r), COUNT(a))])

/* Fills idx[0..OFFLINE_PICKS) with distinct numbers below n (n >= OFFLINE_PICKS). */
static void offline_pick_distinct(struct offline_rng *r, size_t n, size_t idx[OFFLINE_PICKS])
{
    for (size_t i = 0; i < OFFLINE_PICKS; i++) {
        bool again;
        do {
            idx[i] = offline_pick(r, n);
            again = false;
            for (size_t j = 0; j < i; j++)
                again = again || idx[j] == idx[i];
        } while (again);
    }
}

/* ---- genre and cast ------------------------------------------------------------------ */

static bool offline_ascii_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * The bank for genre (case-insensitive keywords at the start of a word); when several
 * genres are named, the last one wins ("space western" is a western, "romantic comedy"
 * a comedy). Unknown genres get the generic bank.
 */
static const struct offline_bank *offline_bank_for(const char *genre)
{
    char low[OFFLINE_GENRE_SCAN + 1];
    const struct offline_bank *best = OFFLINE_GENERIC;
    size_t n = 0, best_at = 0, best_len = 0;

    for (; genre != NULL && genre[n] != '\0' && n < OFFLINE_GENRE_SCAN; n++)
        low[n] = (genre[n] >= 'A' && genre[n] <= 'Z') ? (char)(genre[n] - 'A' + 'a') : genre[n];
    low[n] = '\0';
    for (size_t b = 0; b < OFFLINE_NAMED_BANKS; b++) {
        for (size_t k = 0; k < OFFLINE_KEYS_MAX && offline_banks[b].keys[k] != NULL; k++) {
            const char *key = offline_banks[b].keys[k];
            size_t klen = strlen(key);
            for (const char *p = strstr(low, key); p != NULL; p = strstr(p + 1, key)) {
                size_t at = (size_t)(p - low);
                if (at > 0 && offline_ascii_alpha(low[at - 1]))
                    continue;
                if (best == OFFLINE_GENERIC || at > best_at || (at == best_at && klen > best_len))
                    best = &offline_banks[b], best_at = at, best_len = klen;
            }
        }
    }
    return best;
}

static bool offline_word_byte(unsigned char c)
{
    return c >= 0x80 || offline_ascii_alpha((char)c) || (c >= '0' && c <= '9') || c == '\'' ||
           c == '-';
}

static bool offline_in(const char *w, size_t len, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(list[i]) == len && memcmp(list[i], w, len) == 0)
            return true;
    return false;
}

/* The next word of s[0..end) from *at: its start and length (0 at the end). */
static size_t offline_next_word(const char *s, size_t end, size_t *at, const char **w)
{
    while (*at < end && !offline_word_byte((unsigned char)s[*at]))
        (*at)++;
    *w = s + *at;
    while (*at < end && offline_word_byte((unsigned char)s[*at]))
        (*at)++;
    size_t len = (size_t)(s + *at - *w);
    if (offline_has_suffix(*w, len, "'s") && len > 3)
        len -= 2;
    else if (offline_has_suffix(*w, len, "\xe2\x80\x99s") && len > 5)
        len -= 4;
    return len;
}

/* Whether w could be a name: capitalised (or non-Latin), 2..OFFLINE_NAME_MAX characters. */
static bool offline_name_word(const char *w, size_t len)
{
    unsigned char c = (unsigned char)w[0];
    size_t chars = offline_chars(w, len);
    return len > 0 && ((c >= 'A' && c <= 'Z') || c >= 0x80) && chars >= 2 &&
           chars <= OFFLINE_NAME_MAX && !offline_in(w, len, NOT_NAMES, COUNT(NOT_NAMES));
}

/*
 * A new string: the first name in the cleaned cast who ("Alice, a knight" -> "Alice",
 * "Captain Reyes and a cat" -> "Captain Reyes", "Captain Ada Reyes" -> "Ada"), or ""
 * when there is none. NULL when memory ran out.
 */
static char *offline_name(const char *who)
{
    const char *w = NULL, *first = NULL;
    size_t at = 0, len, first_len = 0, end = strlen(who);

    if (offline_has_suffix(who, end, OFFLINE_ELLIPSIS)) /* a cut cast */
        end -= strlen(OFFLINE_ELLIPSIS);
    while ((len = offline_next_word(who, end, &at, &w)) > 0) {
        if (!offline_name_word(w, len))
            continue;
        if (offline_in(w, len, HONORIFICS, COUNT(HONORIFICS))) {
            first = w, first_len = len;
            continue;
        }
        if (first != NULL && (size_t)(w - first) == first_len + 1) {
            size_t next = at, more_len;
            const char *more;
            if ((more_len = offline_next_word(who, end, &next, &more)) == 0 ||
                more != w + len + 1 || !offline_name_word(more, more_len))
                w = first, len += first_len + 1; /* "Captain Reyes", not "Captain Ada" */
        }
        char *name = malloc(len + 1);
        if (name != NULL) {
            memcpy(name, w, len);
            name[len] = '\0';
        }
        return name;
    }
    char *none = malloc(1);
    if (none != NULL)
        none[0] = '\0';
    return none;
}

/* ---- templates --------------------------------------------------------------------- */

struct offline_vars {
    const char *v['Z' - 'A' + 1]; /* borrowed; NULL reads as "" */
};

#define VAR(vars, c) ((vars)->v[(c) - 'A'])

/* Copies n bytes of s to dst + at (when dst is not NULL); returns n. */
static size_t offline_put(char *dst, size_t at, const char *s, size_t n, bool cap)
{
    if (dst != NULL && n > 0) {
        memcpy(dst + at, s, n);
        if (cap && dst[at] >= 'a' && dst[at] <= 'z')
            dst[at] = (char)(dst[at] - 'a' + 'A');
    }
    return n;
}

/*
 * Expands tpl (a static template) into dst, or only measures it when dst is NULL;
 * returns the bytes written. Values are copied, never expanded themselves.
 */
static size_t offline_expand(const char *tpl, const struct offline_vars *vars, char *dst)
{
    size_t at = 0;

    for (const char *p = tpl; *p != '\0'; p++) {
        bool cap = *p == '^';
        if ((*p != '%' && !cap) || p[1] < 'A' || p[1] > 'Z') {
            at += offline_put(dst, at, p, 1, false);
            continue;
        }
        char c = *++p;
        if (c == 'O' || c == 'Q') {
            const char *obj = VAR(vars, 'O') != NULL ? VAR(vars, 'O') : "";
            const char *art = "the ";
            if (c == 'Q')
                art = obj[0] != '\0' && strchr("aeiou", obj[0]) != NULL ? "an " : "a ";
            at += offline_put(dst, at, art, strlen(art), cap);
            at += offline_put(dst, at, obj, strlen(obj), false);
            continue;
        }
        const char *val = VAR(vars, c) != NULL ? VAR(vars, c) : "";
        at += offline_put(dst, at, val, strlen(val), cap);
    }
    return at;
}

/* A new string: the n templates expanded and joined by spaces; NULL when memory ran out. */
static char *offline_render(const char *const *tpl, size_t n, const struct offline_vars *vars)
{
    size_t len = 0, at = 0;

    for (size_t i = 0; i < n; i++)
        len += offline_expand(tpl[i], vars, NULL) + (i > 0);
    char *s = malloc(len + 1);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            s[at++] = ' ';
        at += offline_expand(tpl[i], vars, s + at);
    }
    s[at] = '\0';
    return s;
}

/* ---- the parts --------------------------------------------------------------------- */

/* What one request knows: its bank, its two choice streams and its variables. */
struct offline_story {
    const struct offline_bank *bank;
    struct offline_rng story, part;
    struct offline_vars vars;
    bool named; /* the cast gave a name */
};

/* The cleaned client text a story borrows into its variables. */
struct offline_owned {
    char *who, *name, *line, *input;
};

static void offline_owned_free(struct offline_owned *own)
{
    free(own->who);
    free(own->name);
    free(own->line);
    free(own->input);
}

/* Cleans rq's text into own and sets up st. Returns 0, or -1 when memory ran out. */
static int offline_prepare(const struct tale_request *rq, struct offline_story *st,
                           struct offline_owned *own)
{
    const struct offline_bank *b = offline_bank_for(rq->genre);
    struct offline_vars *v = &st->vars;
    struct offline_rng *s = &st->story, *p = &st->part;

    own->who = offline_clean(rq->characters, OFFLINE_WHO_MAX, false);
    own->line = offline_clean(rq->opening_line, TALE_OPENING_MAX, true);
    own->input = offline_clean(rq->kind == TALE_CONTINUATION ? rq->user_input : NULL,
                               OFFLINE_INPUT_EXCERPT, true);
    if (own->who == NULL || own->line == NULL || own->input == NULL ||
        (own->name = offline_name(own->who)) == NULL)
        return -1;
    memset(st, 0, sizeof *st);
    st->bank = b;
    st->story.s = offline_story_seed(rq);
    st->part.s = offline_part_seed(rq);
    st->named = own->name[0] != '\0';
    /* The story's world: drawn in a fixed order so that every part agrees. */
    VAR(v, 'S') = PICK(s, b->settings);
    VAR(v, 'O') = PICK(s, b->objects);
    VAR(v, 'T') = PICK(s, b->threats);
    VAR(v, 'G') = PICK(s, b->goals);
    VAR(v, 'H') = PICK(s, b->heroes);
    VAR(v, 'J') = PICK(s, b->tadjs);
    VAR(v, 'K') = PICK(s, b->tnouns);
    /* This part's details. */
    VAR(v, 'P') = PICK(p, b->places);
    VAR(v, 'A') = PICK(p, b->allies);
    VAR(v, 'E') = PICK(p, WHEN);
    VAR(v, 'B') = b->label;
    VAR(v, 'W') = own->who[0] != '\0' ? own->who : VAR(v, 'H');
    if (st->named)
        VAR(v, 'N') = own->name;
    else
        VAR(v, 'N') = strpbrk(own->who, ",&") != NULL || strstr(own->who, " and ") != NULL
                          ? "our heroes"
                          : "our hero";
    VAR(v, 'L') = own->line;
    VAR(v, 'I') = own->input;
    return 0;
}

static char *offline_opening(struct offline_story *st)
{
    const char *tpl[OFFLINE_SENTENCES_MAX];
    struct offline_rng *r = &st->part;
    size_t n = 0;

    if (VAR(&st->vars, 'L')[0] != '\0') {
        tpl[n++] = "%L";
        tpl[n++] = PICK(r, OPEN_AFTER_LINE);
    } else {
        tpl[n++] = PICK(r, OPEN_SETTING);
    }
    tpl[n++] =
        strchr(VAR(&st->vars, 'W'), ',') != NULL ? PICK(r, OPEN_WHO_LIST) : PICK(r, OPEN_WHO);
    tpl[n++] = PICK(r, st->bank->moods);
    tpl[n++] = PICK(r, OPEN_FIND);
    tpl[n++] = PICK(r, OPEN_THREAT);
    tpl[n++] = PICK(r, OPEN_HOOK);
    return offline_render(tpl, n, &st->vars);
}

static char *offline_continuation(struct offline_story *st, size_t nparts)
{
    const char *tpl[OFFLINE_SENTENCES_MAX];
    struct offline_rng *r = &st->part;
    size_t n = 0;

    if (VAR(&st->vars, 'I')[0] != '\0') {
        tpl[n++] = PICK(r, CONT_INPUT);
        tpl[n++] = PICK(r, CONT_FOLLOW);
        tpl[n++] = PICK(r, CONT_PLACE);
        tpl[n++] = offline_pick(r, 2) ? PICK(r, CONT_ALLY) : PICK(r, st->bank->twists);
    } else {
        tpl[n++] = PICK(r, CONT_PLACE);
        tpl[n++] = PICK(r, st->bank->twists);
        tpl[n++] = PICK(r, CONT_ALLY);
        tpl[n++] =
            nparts >= 3 && offline_pick(r, 2) ? PICK(r, CONT_PROGRESS) : PICK(r, st->bank->moods);
    }
    tpl[n++] = PICK(r, CONT_TENSION);
    if (offline_pick(r, 2))
        tpl[n++] = PICK(r, CONT_HOOK);
    return offline_render(tpl, n, &st->vars);
}

static char *offline_ending(struct offline_story *st)
{
    struct offline_rng *r = &st->part;
    const char *tpl[OFFLINE_SENTENCES_MAX];
    size_t n = 0;

    /* One statement per draw: the order of the draws is part of the output. */
    tpl[n++] = PICK(r, END_INTRO);
    tpl[n++] = PICK(r, st->bank->climaxes);
    tpl[n++] = PICK(r, END_RESOLVE);
    tpl[n++] = PICK(r, END_AFTER);
    tpl[n++] = PICK(r, st->bank->closings);
    tpl[n++] = "The end.";
    return offline_render(tpl, n, &st->vars);
}

static char *offline_title(struct offline_story *st)
{
    const char *tpl = st->named ? PICK(&st->story, TITLE_NAMED) : PICK(&st->story, TITLE_PLAIN);
    char *title = offline_render(&tpl, 1, &st->vars);

    if (title != NULL)
        offline_fit(title, SIZE_MAX, TALE_TITLE_MAX);
    return title;
}

/* Three things that could happen next, from distinct templates. */
static int offline_suggestions(struct offline_story *st, char *out[OFFLINE_PICKS])
{
    size_t idx[OFFLINE_PICKS];

    offline_pick_distinct(&st->part, COUNT(SUGGEST), idx);
    for (size_t i = 0; i < OFFLINE_PICKS; i++) {
        if ((out[i] = offline_render(&SUGGEST[idx[i]], 1, &st->vars)) == NULL)
            return -1;
        offline_fit(out[i], SIZE_MAX, TALE_SUGGESTION_MAX);
    }
    return 0;
}

/* Three ideas for a new story, each from another genre and another template. */
static int offline_ideas(struct offline_story *st, char *out[OFFLINE_PICKS])
{
    struct offline_rng *r = &st->part;
    size_t banks[OFFLINE_PICKS], forms[OFFLINE_PICKS];

    offline_pick_distinct(r, OFFLINE_NAMED_BANKS, banks);
    offline_pick_distinct(r, COUNT(IDEAS), forms);
    for (size_t i = 0; i < OFFLINE_PICKS; i++) {
        const struct offline_bank *b = &offline_banks[banks[i]];
        struct offline_vars v = {0};
        VAR(&v, 'B') = b->label;
        VAR(&v, 'H') = PICK(r, b->heroes);
        VAR(&v, 'G') = PICK(r, b->goals);
        VAR(&v, 'T') = PICK(r, b->threats);
        VAR(&v, 'O') = PICK(r, b->objects);
        if ((out[i] = offline_render(&IDEAS[forms[i]], 1, &v)) == NULL)
            return -1;
        offline_fit(out[i], SIZE_MAX, TALE_SUGGESTION_MAX);
    }
    return 0;
}

static void offline_result_free(struct tale_result *res)
{
    free(res->text);
    free(res->title);
    for (size_t i = 0; i < TALE_SUGGESTION_COUNT; i++)
        free(res->suggestions[i]);
}

int offline_write(const struct tale_request *rq, struct tale_result *out)
{
    struct offline_owned own = {0};
    struct offline_story st;
    struct tale_result res = {0};
    int rc = -1;

    if (rq == NULL || out == NULL)
        return -1;
    switch (rq->kind) {
    case TALE_OPENING:
    case TALE_CONTINUATION:
    case TALE_ENDING:
    case TALE_SUGGESTIONS:
    case TALE_IDEAS: break;
    default: return -1;
    }
    if (offline_prepare(rq, &st, &own) != 0)
        goto out;
    switch (rq->kind) {
    case TALE_OPENING:
        if ((res.text = offline_opening(&st)) == NULL || (res.title = offline_title(&st)) == NULL)
            goto out;
        break;
    case TALE_CONTINUATION:
        if ((res.text = offline_continuation(&st, rq->parts != NULL ? rq->nparts : 0)) == NULL)
            goto out;
        break;
    case TALE_ENDING:
        if ((res.text = offline_ending(&st)) == NULL)
            goto out;
        break;
    case TALE_SUGGESTIONS:
        if (offline_suggestions(&st, res.suggestions) != 0)
            goto out;
        break;
    case TALE_IDEAS:
        if (offline_ideas(&st, res.suggestions) != 0)
            goto out;
        break;
    }
    if (res.text != NULL)
        offline_fit(res.text, TALE_TEXT_MAX - 1, SIZE_MAX);
    snprintf(res.model, sizeof res.model, "%s", OFFLINE_MODEL);
    *out = res;
    memset(&res, 0, sizeof res);
    rc = 0;
out:
    offline_result_free(&res);
    offline_owned_free(&own);
    return rc;
}
