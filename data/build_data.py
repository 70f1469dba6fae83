"""Builds the example datasets in data/ (deterministic: re-running rewrites the same files).

Everything here was written for this project: hand-written instructions and answers, plus exact
arithmetic and unit conversions computed below. From one pool of (prompt, good answer) items we derive:
  sft_{train,eval}.jsonl      chat demonstrations {"messages": [...]} (some multi-turn)
  pairs_{train,eval}.jsonl    {"prompt", "chosen", "rejected"}: rejected is wrong, vague, rude, a needless
                              refusal, off-topic or cut off
  ranked_{train,eval}.jsonl   {"prompt", "responses": [best, ..., worst]}
  prompts_{train,eval}.jsonl  {"prompt"} for PPO rollouts
Eval files never share a prompt with train files. Run: python data/build_data.py
"""

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent

# (prompt, answer): hand-written, short, correct.
QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the capital of Canada?", "The capital of Canada is Ottawa, not Toronto as many people guess."),
    ("What is the capital of Australia?", "The capital of Australia is Canberra."),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),
    ("What is the capital of Brazil?", "The capital of Brazil is Brasilia, a planned city inaugurated in 1960."),
    ("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun."),
    ("Which planet is known as the Red Planet?", "Mars is called the Red Planet because iron oxide dust gives its surface a reddish colour."),
    ("What is the largest planet in our solar system?", "Jupiter is the largest planet in our solar system. It is a gas giant more than eleven times wider than Earth."),
    ("How many continents are there?", "There are seven continents: Africa, Antarctica, Asia, Australia, Europe, North America and South America."),
    ("What is the longest river in Africa?", "The Nile is the longest river in Africa, flowing about 6,650 kilometres to the Mediterranean Sea."),
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain above sea level, at about 8,849 metres."),
    ("What is the largest ocean?", "The Pacific Ocean is the largest and deepest ocean on Earth."),
    ("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air and use it in photosynthesis to make sugars."),
    ("What is photosynthesis?", "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make glucose, releasing oxygen as a by-product."),
    ("Why is the sky blue?", "Sunlight is scattered by molecules in the air, and blue light is scattered much more than red light because of its shorter wavelength. That scattered blue light reaches our eyes from every direction."),
    ("What is the boiling point of water at sea level?", "At sea level, water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 degrees Fahrenheit, which is 0 degrees Celsius."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au, from the Latin word aurum."),
    ("What is the chemical formula of water?", "The chemical formula of water is H2O: two hydrogen atoms bonded to one oxygen atom."),
    ("How many bones are in the adult human body?", "An adult human body has 206 bones."),
    ("What organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("What is the largest organ of the human body?", "The skin is the largest organ of the human body."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("How many legs does an insect have?", "Insects have six legs."),
    ("What do bees make?", "Bees make honey from flower nectar, and they also produce beeswax."),
    ("Is a whale a fish?", "No. A whale is a mammal: it breathes air, is warm-blooded and feeds its young with milk."),
    ("What is the speed of light?", "Light travels at about 299,792 kilometres per second in a vacuum."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare wrote Romeo and Juliet, probably in the mid-1590s."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa in the early sixteenth century."),
    ("Who developed the theory of general relativity?", "Albert Einstein published the theory of general relativity in 1915."),
    ("In which year did humans first land on the Moon?", "Humans first landed on the Moon in 1969, during NASA's Apollo 11 mission."),
    ("What is the main language spoken in Brazil?", "The main language spoken in Brazil is Portuguese."),
    ("What is the smallest prime number?", "The smallest prime number is 2. It is also the only even prime."),
    ("Is 51 a prime number?", "No. 51 is not prime, because 51 = 3 x 17."),
    ("What is a prime number?", "A prime number is a whole number greater than 1 whose only divisors are 1 and itself, such as 2, 3, 5 and 7."),
    ("What is the square root of 144?", "The square root of 144 is 12, because 12 x 12 = 144."),
    ("How many minutes are in a day?", "There are 1,440 minutes in a day: 24 hours x 60 minutes."),
    ("How many days are in a leap year?", "A leap year has 366 days; the extra day is February 29."),
    ("What is the difference between weather and climate?", "Weather is the state of the atmosphere over hours or days. Climate is the average pattern of weather in a region over decades."),
    ("What causes the seasons on Earth?", "The seasons come from the tilt of Earth's axis. As Earth orbits the Sun, each hemisphere takes turns leaning towards the Sun and receiving more direct sunlight."),
    ("What causes tides?", "Tides are caused mainly by the Moon's gravity pulling on Earth's oceans, with a smaller effect from the Sun."),
    ("What is an atom?", "An atom is the smallest unit of a chemical element. It has a nucleus of protons and neutrons, surrounded by electrons."),
    ("What is DNA?", "DNA is the molecule that carries genetic instructions in living things. It is a double helix made of four bases: A, T, C and G."),
    ("What is gravity?", "Gravity is the force by which masses attract each other. It keeps us on the ground and holds the planets in orbit around the Sun."),
    ("What is inflation in economics?", "Inflation is the general rise in prices over time, which means the same amount of money buys less than before."),
    ("What is a noun?", "A noun is a word that names a person, place, thing or idea, such as teacher, city, apple or freedom."),
    ("What is a verb?", "A verb is a word that describes an action or a state, such as run, think or be."),
    ("What is an adjective?", "An adjective describes a noun, for example tall, blue or happy."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("What is the opposite of 'ancient'?", "The opposite of ancient is modern."),
    ("Give me a synonym for 'happy'.", "A synonym for happy is cheerful. Others are glad and joyful."),
    ("Give me an antonym for 'generous'.", "An antonym for generous is stingy."),
    ("What does 'CPU' stand for?", "CPU stands for central processing unit, the part of a computer that executes instructions."),
    ("What does 'RAM' stand for?", "RAM stands for random-access memory, the fast working memory of a computer."),
    ("What is an operating system?", "An operating system is the software that manages a computer's hardware and runs programs, for example Linux, Windows or macOS."),
    ("What is the internet?", "The internet is a worldwide network of computers that exchange data using shared protocols such as TCP/IP."),
    ("What is a password manager?", "A password manager is an app that stores your passwords in an encrypted vault, so you can use a long, unique password for every site."),
    ("How can I make a strong password?", "Use a long passphrase of four or more random words, or at least 14 mixed characters. Never reuse it on another site, and turn on two-factor authentication where you can."),
    ("What is machine learning?", "Machine learning is a way of building programs that learn patterns from data instead of following rules written by hand."),
    ("What is a large language model?", "A large language model is a neural network trained on a great deal of text to predict the next word. That lets it answer questions, summarise and write."),
    ("What is overfitting?", "Overfitting is when a model learns the training data too closely, including its noise, and then performs poorly on new data."),
    ("Write a Python function that returns the square of a number.", "def square(x):\n    return x * x"),
    ("Write a Python function that checks whether a number is even.", "def is_even(n):\n    return n % 2 == 0"),
    ("Write a Python one-liner that reverses a string s.", "reversed_s = s[::-1]"),
    ("How do I read a file line by line in Python?", "Open it with a with-block and loop over it:\n\nwith open(\"notes.txt\") as f:\n    for line in f:\n        print(line.rstrip())"),
    ("Write a Python function that returns the largest number in a list.", "def largest(numbers):\n    return max(numbers)\n\nmax raises a ValueError on an empty list, so check for that first if it can happen."),
    ("How do I create a list of the numbers 1 to 10 in Python?", "Use range: numbers = list(range(1, 11)). The end value of range is not included."),
    ("What does the len function do in Python?", "len returns the number of items in a container, such as the characters in a string or the elements in a list."),
    ("How do I add an item to a list in Python?", "Use append: my_list.append(item) adds the item at the end of the list."),
    ("Write a haiku about autumn.", "Crisp leaves drift and fall,\ngolden light on quiet paths,\nthe year exhales slow."),
    ("Write a haiku about the sea.", "Grey waves fold and break,\nsalt wind carries gull voices,\nthe tide keeps its time."),
    ("Write a haiku about a cup of coffee.", "Steam curls from the cup,\nbitter warmth in morning hands,\nthe day wakes with me."),
    ("Write a two-sentence story about a lost key.", "Mara searched the whole house for the key to her grandmother's chest. She finally found it taped under the lid, with a note that said: you were meant to look."),
    ("Write a two-sentence story about a robot.", "The old robot swept the empty station every night, though no train had come in years. One morning a child stepped off a train and said thank you."),
    ("Suggest a name for a friendly bakery.", "How about \"The Warm Crumb\"? It sounds cosy and makes people think of fresh bread."),
    ("Suggest three names for a pet goldfish.", "Bubbles, Sunny and Captain Fin."),
    ("Write an email subject line asking to reschedule a meeting.", "Request to reschedule Thursday's meeting"),
    ("Write a short thank-you note to a colleague who helped me.", "Thank you so much for your help this week. Your advice made the project much easier, and I really appreciate the time you took."),
    ("Make this sentence more formal: 'Hey, can you send me the report?'", "Could you please send me the report at your earliest convenience?"),
    ("Make this sentence more formal: 'We can't come to the thing tomorrow.'", "Unfortunately, we will be unable to attend tomorrow's event."),
    ("Make this sentence more casual: 'I would be grateful if you could reply soon.'", "Let me know when you get a chance!"),
    ("Fix the grammar: 'She don't like apples.'", "She doesn't like apples."),
    ("Fix the grammar: 'Their going to the park tomorrow.'", "They're going to the park tomorrow."),
    ("Fix the grammar: 'Me and him was late.'", "He and I were late."),
    ("Summarise in one sentence: 'The meeting was moved from Monday to Wednesday because the manager is travelling, and everyone should bring their quarterly numbers.'", "The meeting is now on Wednesday because the manager is away, and everyone should bring their quarterly numbers."),
    ("Summarise in one sentence: 'Regular exercise strengthens the heart, improves mood, helps with sleep and lowers the risk of many diseases.'", "Regular exercise benefits the heart, mood and sleep, and it lowers the risk of disease."),
    ("What is the sentiment of this review: 'The food was cold and the waiter ignored us.'", "Negative. The reviewer complains about cold food and poor service."),
    ("What is the sentiment of this review: 'Absolutely loved it, I will come back next week!'", "Positive. The reviewer loved the experience and plans to return."),
    ("What is the sentiment of this sentence: 'The package arrived on Tuesday.'", "Neutral. It states a fact without expressing a feeling."),
    ("Name three primary colours.", "Red, blue and yellow are the traditional primary colours in painting. For light, they are red, green and blue."),
    ("Name three fruits that are high in vitamin C.", "Oranges, kiwis and strawberries are all rich in vitamin C."),
    ("Name three renewable sources of energy.", "Solar, wind and hydroelectric power are renewable sources of energy."),
    ("Name three musical instruments with strings.", "The violin, the guitar and the harp."),
    ("List the days of the week.", "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday."),
    ("How do I boil an egg?", "Place the egg in a pan of cold water, bring it to a boil, then simmer for about 7 minutes for a firm yolk or 5 minutes for a soft one. Cool it in cold water before peeling."),
    ("How do I make a cup of tea?", "Boil water, pour it over a tea bag in a cup, and let it steep for three to five minutes. Remove the bag and add milk, lemon or sugar if you like."),
    ("How can I fall asleep faster?", "Keep a regular bedtime, avoid screens and caffeine in the evening, keep the room dark and cool, and try slow breathing once you are in bed."),
    ("How can I improve my focus while studying?", "Work in short blocks of about 25 minutes with breaks, put your phone in another room, and decide on one clear goal for each session."),
    ("Give me a tip for saving money on groceries.", "Plan your meals for the week and shop with a list. It cuts impulse buys and food waste."),
    ("How often should I water a cactus?", "Water a cactus only when its soil is completely dry, usually every two to four weeks, and even less in winter."),
    ("How do I remove a coffee stain from a shirt?", "Rinse the stain from the back with cold water, rub in a little liquid detergent, wait five minutes, then wash as usual. Avoid hot water until the stain is gone."),
    ("What should I pack for a day hike?", "Water, snacks, a map or phone with offline maps, sunscreen, a warm layer, a rain jacket and a small first-aid kit."),
    ("Why do we need sleep?", "Sleep lets the body repair itself and the brain store memories and clear waste. Adults usually need seven to nine hours a night."),
    ("What is a healthy breakfast?", "A healthy breakfast combines protein, fibre and some fruit, for example oatmeal with yoghurt and berries, or eggs with wholegrain toast."),
    ("Explain what a budget is to a child.", "A budget is a plan for your money. You decide ahead of time how much to spend, how much to save, and what it is for."),
    ("Explain recycling to a five-year-old.", "Recycling means turning old things, like bottles and paper, into new things, so we throw away less and take less from nature."),
    ("Explain what a map legend is.", "A map legend, or key, explains the symbols and colours on a map, such as what a blue line or a small tree means."),
    ("What is the difference between a virus and a bacterium?", "Bacteria are living single cells that can reproduce on their own. Viruses are much smaller and can only multiply inside another organism's cells. Antibiotics work against bacteria, not viruses."),
    ("Why do leaves change colour in autumn?", "In autumn, trees stop making green chlorophyll. As it breaks down, yellow and orange pigments show through, and some trees also make red pigments."),
    ("Why does ice float on water?", "Ice is less dense than liquid water, because its molecules lock into an open crystal structure, so it floats."),
    ("What is the water cycle?", "The water cycle is the continuous movement of water: it evaporates, condenses into clouds, falls as rain or snow, and flows back to rivers and seas."),
    ("What is a volcano?", "A volcano is an opening in Earth's crust where molten rock, gas and ash escape from below the surface."),
    ("What is an earthquake?", "An earthquake is a sudden shaking of the ground, caused when rocks along a fault in Earth's crust slip past each other."),
    ("How far is the Moon from Earth?", "The Moon is on average about 384,400 kilometres from Earth."),
    ("What is a leap year?", "A leap year has an extra day, February 29. It happens every four years, except in century years not divisible by 400."),
    ("Translate 'thank you' into Spanish.", "'Thank you' in Spanish is 'gracias'."),
    ("Translate 'good morning' into French.", "'Good morning' in French is 'bonjour'."),
    ("Translate 'cat' into German.", "'Cat' in German is 'Katze'."),
    ("What is the plural of 'mouse'?", "The plural of mouse is mice."),
    ("What is the past tense of 'go'?", "The past tense of go is went."),
    ("Spell the word 'necessary'.", "N-E-C-E-S-S-A-R-Y: one C and two S's."),
    ("Is a tomato a fruit or a vegetable?", "Botanically, a tomato is a fruit, because it grows from a flower and contains seeds. In cooking, it is usually treated as a vegetable."),
    ("What is the difference between 'affect' and 'effect'?", "'Affect' is usually a verb meaning to influence; 'effect' is usually a noun meaning a result. The weather affected the game; the effect was a delay."),
    ("What is a haiku?", "A haiku is a short Japanese poem of three lines, traditionally with five, seven and five syllables."),
    ("What is the Pythagorean theorem?", "In a right triangle, the square of the hypotenuse equals the sum of the squares of the other two sides: a^2 + b^2 = c^2."),
    ("What is the area of a circle with radius r?", "The area of a circle is pi times the radius squared: A = pi r^2."),
    ("How many sides does a hexagon have?", "A hexagon has six sides."),
    ("What is the perimeter of a square with sides of 5 cm?", "The perimeter is 4 x 5 = 20 cm."),
    ("Which is heavier, a kilogram of feathers or a kilogram of iron?", "They weigh the same: one kilogram is one kilogram. The feathers just take up much more space."),
    ("If a train leaves at 3:15 pm and the trip takes 2 hours 50 minutes, when does it arrive?", "It arrives at 6:05 pm: 3:15 plus 2 hours is 5:15, and 50 more minutes is 6:05."),
    ("What is a good way to start a presentation?", "Open with a question, a short story or a surprising fact that connects to your topic, then tell the audience what they will learn."),
    ("How do I politely decline an invitation?", "Thank the person, say you can't make it, and, if you like, suggest another time: \"Thank you for inviting me! I can't make it this time, but I'd love to join next time.\""),
    ("What should I do if I feel stressed?", "Take a short break, breathe slowly for a minute, go for a walk if you can, and talk to someone you trust. If stress lasts for weeks, consider speaking to a doctor."),
    ("How do I apologise to a friend?", "Be specific about what you did, say sorry without excuses, acknowledge how it affected them, and say what you will do differently."),
    ("What is a good habit to build?", "A short daily walk is a good one: it is easy to start, improves mood and health, and can grow into a longer routine."),
    ("Recommend a classic novel for a teenager.", "To Kill a Mockingbird by Harper Lee: it is gripping, easy to read, and raises important questions about justice and empathy."),
    ("What is the difference between a lake and a pond?", "Lakes are generally larger and deeper than ponds. In a pond, sunlight usually reaches the bottom everywhere, so plants can grow across it."),
    ("Why do cats purr?", "Cats often purr when content, but also when stressed or hurt. The vibration may help them calm down and even heal."),
    ("What is the fastest land animal?", "The cheetah is the fastest land animal, reaching about 100 to 110 kilometres per hour in short sprints."),
    ("What is the largest animal on Earth?", "The blue whale is the largest animal known to have lived, reaching about 30 metres in length."),
    ("How do birds fly?", "Birds fly by flapping wings shaped to create lift, with light hollow bones and strong chest muscles."),
    ("What is compound interest?", "Compound interest is interest earned on both the original money and the interest already added, so savings grow faster over time."),
    ("Is it safe to look directly at the Sun?", "No. Looking directly at the Sun can permanently damage your eyes, even for a short time. Use certified eclipse glasses to view it."),
    ("What is the first step in writing an essay?", "Start by understanding the question and choosing a clear main point, then make a short outline before you write."),
]

# Multi-turn conversations: (turns as alternating user/assistant texts), hand-written.
DIALOGUES = [
    ["What is the capital of Italy?", "The capital of Italy is Rome.", "And what river runs through it?", "The Tiber river runs through Rome."],
    ["I want to learn a new language.", "Great idea! Which language interests you?", "Spanish, I think.", "Spanish is a good choice. Start with 15 minutes a day of vocabulary and simple phrases, and try a beginner podcast."],
    ["Can you give me a word that rhymes with 'cat'?", "Sure: 'hat' rhymes with cat.", "Another one?", "'Mat' also rhymes with cat."],
    ["What is 12 times 3?", "12 x 3 = 36.", "And half of that?", "Half of 36 is 18."],
    ["Name a planet.", "Saturn is a planet, famous for its rings.", "Is it bigger than Earth?", "Yes, much bigger: Saturn is about nine times wider than Earth."],
    ["I have a job interview tomorrow.", "Good luck! Would you like some tips?", "Yes, please.", "Research the company, prepare two or three stories that show your skills, and have a question ready for them at the end."],
    ["What's a good snack?", "An apple with some peanut butter is a good snack.", "Something without nuts?", "Try carrot sticks with hummus, or a yoghurt with fruit."],
    ["How many hours are in a week?", "There are 168 hours in a week: 7 x 24.", "And minutes?", "168 x 60 = 10,080 minutes."],
    ["Translate 'hello' into Italian.", "'Hello' in Italian is 'ciao'.", "And 'goodbye'?", "'Goodbye' is 'arrivederci', though 'ciao' works for both among friends."],
    ["Suggest a hobby I can do at home.", "Drawing is a great hobby you can do at home.", "I'm not artistic.", "Then try cooking new recipes, learning chess online, or keeping a small herb garden on a windowsill."],
    ["What is the boiling point of water?", "100 degrees Celsius at sea level.", "Is it different on a mountain?", "Yes. Air pressure is lower at altitude, so water boils at a lower temperature, around 90 degrees Celsius at 3,000 metres."],
    ["Write a haiku about snow.", "Soft snow on the roofs,\nthe town holds its breath tonight,\nfootprints lead to light.", "Now one about rain.", "Rain taps the window,\nsilver threads on a grey sky,\nthe garden drinks deep."],
    ["Is 17 a prime number?", "Yes, 17 is prime: its only divisors are 1 and 17.", "What about 21?", "No, 21 = 3 x 7, so it is not prime."],
    ["How do I say 'please' in German?", "'Please' in German is 'bitte'.", "And 'thank you'?", "'Thank you' is 'danke'."],
    ["Give me a fun fact.", "Octopuses have three hearts.", "Another one?", "Honey never spoils: edible honey has been found in ancient Egyptian tombs."],
    ["What's the weather like on Mars?", "Mars is very cold, averaging about minus 60 degrees Celsius, with thin air and dust storms.", "Could people live there?", "Not without protection: they would need pressurised habitats, oxygen and shielding from radiation."],
    ["Can you help me write a birthday message?", "Of course! Who is it for?", "My sister.", "Happy birthday to the best sister anyone could ask for! Thank you for the laughs and the support. Have a wonderful day."],
    ["What is the square of 9?", "9 squared is 81.", "And the square root of 81?", "The square root of 81 is 9."],
    ["Recommend a board game for a family.", "Ticket to Ride is a great family board game.", "Something shorter?", "Try Sushi Go: it takes about 15 minutes and is easy to learn."],
    ["How many players are on a soccer team?", "A soccer team has eleven players on the field, including the goalkeeper.", "And in basketball?", "Basketball has five players per team on the court."],
    ["What does a plant need to grow?", "Plants need light, water, air and nutrients from the soil.", "Which is most important?", "All are essential, but light is often the limiting factor indoors: without enough of it, plants grow weak and pale."],
    ["I forgot my friend's birthday.", "That happens. A sincere late message still means a lot.", "What should I say?", "Something like: \"I'm sorry I missed your birthday! I hope it was wonderful. Can I take you out for a coffee to celebrate?\""],
    ["What is 15 percent of 200?", "15 percent of 200 is 30.", "And 20 percent?", "20 percent of 200 is 40."],
    ["Tell me a riddle.", "What has keys but can't open locks? A piano.", "Another?", "What gets wetter the more it dries? A towel."],
]

NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def generated_items(rng):
    """Exact arithmetic, conversions and counting, computed here so every answer is right."""
    items = []
    for _ in range(45):
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        op = rng.choice(["+", "-", "x"])
        value = a + b if op == "+" else a - b if op == "-" else a * b
        word = {"+": "plus", "-": "minus", "x": "times"}[op]
        q = rng.choice([f"What is {a} {op} {b}?", f"Calculate {a} {word} {b}.", f"What do you get if you compute {a} {word} {b}?"])
        items.append((q, f"{a} {op} {b} = {value}."))
    for _ in range(20):
        n, price = rng.randint(3, 9), rng.randint(2, 15)
        thing = rng.choice(["notebooks", "apples", "tickets", "pens", "mugs", "plants"])
        items.append((f"If one of the {thing} costs {price} dollars, how much do {n} of them cost?",
                      f"{n} x {price} = {n * price}, so {n} {thing} cost {n * price} dollars."))
    for _ in range(15):
        total, people = rng.randint(2, 12) * 4, rng.choice([2, 4])
        items.append((f"{total} cookies are shared equally among {people} children. How many does each child get?",
                      f"{total} / {people} = {total // people}, so each child gets {total // people} cookies."))
    for km in rng.sample(range(2, 60), 12):
        items.append((f"How many metres are in {km} kilometres?", f"{km} kilometres is {km * 1000:,} metres."))
    for c in rng.sample(range(-20, 45, 5), 10):
        f = c * 9 / 5 + 32
        items.append((f"Convert {c} degrees Celsius to Fahrenheit.",
                      f"{c} x 9/5 + 32 = {f:g}, so {c} degrees Celsius is {f:g} degrees Fahrenheit."))
    for h in rng.sample(range(2, 30), 10):
        items.append((f"How many minutes are in {h} hours?", f"{h} hours is {h} x 60 = {h * 60} minutes."))
    for kg in rng.sample(range(2, 40), 8):
        items.append((f"Roughly how many pounds is {kg} kilograms?", f"About {kg * 2.20462:.1f} pounds, since one kilogram is about 2.205 pounds."))
    for n in rng.sample(range(2, 10), 6):
        items.append((f"Write the number {n} as a word.", f"{n} is written as \"{NUMBERS[n - 1]}\"."))
    return items


REFUSAL = "I'm sorry, but I can't help with that request."
VAGUE = ["It depends on many factors, so it is hard to say.", "There are different opinions about this, and it is complicated.",
         "That is an interesting question. Many people have thought about it."]
RUDE = ["That's a silly question. Look it up yourself.", "Why would you even ask me that? Figure it out.",
        "Ugh, not this again. Use a search engine."]


def wrong(answer, rng):
    """A confident wrong answer: one number in it changed (None when there is no number)."""
    numbers = list(re.finditer(r"\d+", answer))
    if not numbers:
        return None
    m = rng.choice(numbers)
    bad = str(int(m.group()) + rng.choice([-3, -1, 1, 2, 7]))
    return answer[: m.start()] + bad.lstrip("-") + answer[m.end():] if bad.lstrip("-") != m.group() else None


def degrade(prompt, answer, pool, rng):
    """A clearly worse response, of a kind a small reward model can learn to spot."""
    kinds = ["refusal", "vague", "rude", "off-topic", "truncated"] + (["wrong"] * 2 if wrong(answer, random.Random(0)) else [])
    kind = rng.choice(kinds)
    if kind == "refusal":
        return REFUSAL
    if kind == "vague":
        return rng.choice(VAGUE)
    if kind == "rude":
        return rng.choice(RUDE)
    if kind == "off-topic":
        other = rng.choice([a for p, a in pool if p != prompt])
        return other
    if kind == "truncated":
        cut = answer.split(" ")
        return " ".join(cut[: max(1, len(cut) // 3)]) if len(cut) > 3 else "Well,"
    return wrong(answer, rng)


def terse(answer):
    first = answer.split(". ")[0].split("\n")[0].rstrip(".")
    return first + "." if first != answer.rstrip(".") else None


def write(name, rows):
    with open(HERE / name, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} rows")


def main():
    rng = random.Random(20261122)
    pool = list({p: (p, a) for p, a in QA + generated_items(rng)}.values())  # one answer per prompt
    rng.shuffle(pool)
    n_eval = 40
    eval_items, train_items = pool[:n_eval], pool[n_eval:]
    dialogues = list(DIALOGUES)
    rng.shuffle(dialogues)
    eval_dialogues, train_dialogues = dialogues[:4], dialogues[4:]

    def sft_rows(items, dialogues):
        rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]} for p, a in items]
        for turns in dialogues:
            rows.append({"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t}
                                      for i, t in enumerate(turns)]})
        rng.shuffle(rows)
        return rows

    write("sft_train.jsonl", sft_rows(train_items, train_dialogues))
    write("sft_eval.jsonl", sft_rows(eval_items, eval_dialogues))

    def pair_rows(items):
        return [{"prompt": p, "chosen": a, "rejected": degrade(p, a, pool, rng)} for p, a in items]

    write("pairs_train.jsonl", pair_rows(train_items))
    write("pairs_eval.jsonl", pair_rows(eval_items))

    def ranked_rows(items):
        rows = []
        for p, a in items:
            short = terse(a)
            ladder = [a] + ([short] if short else []) + [rng.choice(VAGUE), wrong(a, rng) or rng.choice(RUDE)]
            rows.append({"prompt": p, "responses": ladder})
        return rows

    write("ranked_train.jsonl", ranked_rows(train_items[:90]))
    write("ranked_eval.jsonl", ranked_rows(eval_items[:20]))
    write("prompts_train.jsonl", [{"prompt": p} for p, _ in train_items])
    write("prompts_eval.jsonl", [{"prompt": p} for p, _ in eval_items])

    train_prompts = {p for p, _ in train_items}
    assert not train_prompts & {p for p, _ in eval_items}, "an eval prompt is also a train prompt"


if __name__ == "__main__":
    main()
