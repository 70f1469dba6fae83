"""Builds the example datasets in data/ (deterministic: re-running rewrites the same files byte for byte).

Everything here was written for this project (license: Apache-2.0, as the project). It holds hand-written
instructions with hand-written answers (and, for many, a hand-written plausible *wrong* answer), hand-written
multi-turn conversations, and a smaller generated part (arithmetic, word problems, unit conversions) whose
answers are computed exactly below. From that pool it derives:

  sft_{train,eval}.jsonl      {"messages": [...]} chat demonstrations, about 10% multi-turn
  pairs_{train,eval}.jsonl    {"prompt", "chosen", "rejected"}: rejected is wrong, a needless refusal, vague,
                              rude, off-topic or cut off
  ranked_{train,eval}.jsonl   {"prompt", "responses": [best, ..., worst]} (3-4 responses)
  prompts_{train,eval}.jsonl  {"prompt"} for PPO rollouts and evaluation

No eval prompt appears in any train file. Standard library only. Run: python data/build_data.py
"""

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261122

# ---------------------------------------------------------------------------------------------------------
# Hand-written single-turn items: (prompt, good answer) or (prompt, good answer, plausible wrong answer).
# Grouped by category; the category decides which derived responses make sense (e.g. a "terse" answer).
# ---------------------------------------------------------------------------------------------------------

SCIENCE = [
    ("Why does the Moon have phases?",
     "The Moon makes no light of its own; it reflects sunlight. As it orbits Earth over about 29.5 days, we see "
     "different amounts of its sunlit half, from a thin crescent to a full disc and back again.",
     "The Moon's phases happen because Earth's shadow covers a different part of it each night."),
    ("What is the chemical symbol for sodium?",
     "The chemical symbol for sodium is Na, from its Latin name natrium. Sodium is a soft, very reactive metal, "
     "best known as part of table salt, sodium chloride.",
     "The chemical symbol for sodium is So."),
    ("How many chromosomes do humans usually have?",
     "Most humans have 46 chromosomes, arranged in 23 pairs. One set of 23 comes from each parent, and one of "
     "the pairs, the sex chromosomes, is usually XX or XY.",
     "Humans usually have 48 chromosomes, arranged in 24 pairs."),
    ("What do white blood cells do?",
     "White blood cells are part of the immune system. They find and destroy bacteria, viruses and other "
     "invaders, and some of them make antibodies that help the body remember an infection.",
     "White blood cells carry oxygen from the lungs to the rest of the body."),
    ("Explain the difference between speed and velocity.",
     "Speed tells you how fast something moves, for example 50 km/h. Velocity is speed with a direction, such "
     "as 50 km/h heading north. Two cars at the same speed going opposite ways have different velocities.",
     "Speed and velocity are exactly the same thing; physicists use the two words interchangeably."),
    ("What is the hardest natural substance?",
     "Diamond is the hardest naturally occurring substance. It is made of carbon atoms locked in a rigid "
     "three-dimensional lattice, which is why diamonds are used on cutting and drilling tools.",
     "Granite is the hardest natural substance, which is why it is used for kitchen worktops."),
    ("At what temperature are Celsius and Fahrenheit equal?",
     "They are equal at minus 40 degrees: -40 °C is exactly -40 °F. You can check it with F = C × 9/5 + 32: "
     "-40 × 9/5 + 32 = -72 + 32 = -40.",
     "They are equal at 0 degrees, because both scales start counting from zero."),
    ("What is the job of the lungs?",
     "The lungs bring oxygen into the body and remove carbon dioxide. Air reaches millions of tiny sacs called "
     "alveoli, where oxygen passes into the blood and carbon dioxide passes out to be breathed away."),
    ("Why do we see lightning before we hear the thunder?",
     "Light travels about 300,000 kilometres per second, while sound covers only about 340 metres per second in "
     "air. The flash reaches you almost instantly and the sound arrives later: every three seconds of delay "
     "means the strike was roughly one kilometre away.",
     "The lightning comes first and the thunder is only made a few seconds later, when the clouds bump into "
     "each other."),
    ("Which star is closest to Earth?",
     "The Sun is the closest star to Earth. After the Sun, the nearest is Proxima Centauri, about 4.2 "
     "light-years away.",
     "The North Star, Polaris, is the closest star to Earth."),
    ("In chemistry, what is an element?",
     "An element is a pure substance made of only one kind of atom, defined by the number of protons in the "
     "nucleus. Oxygen, iron and carbon are elements; 118 are known so far."),
    ("What is the difference between an acid and a base?",
     "Acids have a pH below 7 and release hydrogen ions in water; lemon juice and vinegar are acidic. Bases "
     "have a pH above 7; soap and baking soda are examples. Pure water, at pH 7, is neutral.",
     "Acids have a pH above 7 and bases have a pH below 7, so vinegar is a typical base."),
    ("How long does Earth take to go around the Sun?",
     "Earth takes about 365.25 days to orbit the Sun once. That extra quarter of a day is why the calendar adds "
     "a leap day almost every four years.",
     "Earth goes around the Sun once every 24 hours, which is what gives us a day."),
    ("What is evaporation?",
     "Evaporation is when a liquid turns into a gas at its surface, below its boiling point. A puddle drying in "
     "the sun is an example: water molecules gain enough energy to escape into the air."),
    ("What are the three common states of matter?",
     "The three common states of matter are solid, liquid and gas. Solids keep their shape, liquids take the "
     "shape of their container, and gases spread out to fill any space. Plasma is often counted as a fourth.",
     "The three states of matter are hot, warm and cold."),
    ("Which blood type is called the universal donor?",
     "O negative is called the universal donor for red blood cells. Its cells carry no A, B or RhD antigens, so "
     "almost any patient can receive them safely in an emergency.",
     "AB positive is the universal donor, because it contains every antigen."),
    ("What do mitochondria do in a cell?",
     "Mitochondria release energy from food. They break down sugars and fats using oxygen to make ATP, the "
     "molecule that powers most of the cell's work, which is why they are called the cell's powerhouses."),
    ("Why do a hammer and a feather fall at the same rate in a vacuum?",
     "Gravity pulls harder on the heavier hammer, but the hammer also needs more force to speed up, and the two "
     "effects cancel exactly. Without air resistance both fall together, as an Apollo 15 astronaut showed on "
     "the Moon.",
     "They don't: even in a vacuum the hammer falls much faster, because gravity pulls harder on heavy objects."),
    ("What is a light-year?",
     "A light-year is a distance, not a time: how far light travels in one year, about 9.46 trillion "
     "kilometres. Astronomers use it because the distances between stars are enormous.",
     "A light-year is the time it takes light to travel from the Sun to Earth."),
    ("How do vaccines work?",
     "A vaccine shows the immune system a harmless piece or a weakened form of a germ. The body learns to "
     "recognise it and keeps memory cells, so if the real germ arrives later, the immune system can fight it "
     "off quickly."),
    ("What is the pH of pure water?",
     "Pure water at 25 °C has a pH of 7, which is neutral: neither acidic nor basic.",
     "Pure water has a pH of 0, since nothing is dissolved in it."),
    ("What is the most common gas in Earth's atmosphere?",
     "Nitrogen is the most common, making up about 78 percent of the air. Oxygen is about 21 percent, and argon, "
     "carbon dioxide and other gases make up the rest.",
     "Oxygen is the most common gas, at about 78 percent of the air."),
    ("What is a food chain?",
     "A food chain shows who eats whom in an ecosystem, for example grass, then a rabbit, then a fox. Energy "
     "passes up the chain, starting with plants that capture sunlight."),
    ("Why is seawater salty?",
     "Rain slowly wears away rocks on land, and rivers carry the dissolved minerals, such as sodium and "
     "chloride, to the sea. When seawater evaporates the salt stays behind, so over millions of years it has "
     "built up.",
     "Seawater is salty because fish release salt into it when they breathe."),
    ("What is kinetic energy?",
     "Kinetic energy is the energy an object has because it is moving. It equals one half times the mass times "
     "the speed squared, so doubling the speed makes the kinetic energy four times as large."),
    ("How many planets are in our solar system?",
     "There are eight planets: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune. Pluto was "
     "reclassified as a dwarf planet in 2006.",
     "There are nine planets, and Pluto is the ninth."),
    ("What is static electricity?",
     "Static electricity is a build-up of electric charge on the surface of an object. Rubbing a balloon on "
     "your hair moves electrons onto the balloon, which can then stick to a wall or make your hair stand up."),
    ("Do we really use only 10 percent of our brains?",
     "No, that is a myth. Brain scans show that we use virtually every part of the brain, and most regions are "
     "active at some point during a normal day, even during sleep.",
     "Yes, humans use only about 10 percent of their brains, and the rest stays switched off."),
    ("What is an echo?",
     "An echo is a sound you hear again after it bounces off a hard surface, such as a cliff or a large wall. "
     "You notice it when the surface is far enough away for the delay to be heard."),
    ("How does a rainbow form?",
     "Sunlight enters raindrops, bends, reflects off the back of each drop and bends again on the way out. Each "
     "colour bends by a slightly different amount, so white light spreads into red, orange, yellow, green, "
     "blue, indigo and violet."),
    ("Why do we have day and night?",
     "Earth spins on its axis about once every 24 hours. The side facing the Sun has day, and the side facing "
     "away from it has night.",
     "We have day and night because the Sun travels around Earth once a day."),
    ("What do a plant's roots do?",
     "Roots anchor the plant in the soil and absorb water and dissolved minerals, which travel up the stem to "
     "the leaves. Some roots, such as carrots, also store food."),
    ("What is friction?",
     "Friction is a force that resists one surface sliding or rolling over another. It lets us walk without "
     "slipping and lets brakes stop a bike, but it also wastes energy as heat in machines."),
    ("How many teeth does an adult usually have?",
     "Most adults have 32 teeth, including four wisdom teeth. Many people have fewer because their wisdom teeth "
     "never come through or are removed.",
     "Adults usually have 20 teeth, the same number as young children."),
    ("What is the difference between a meteor and a meteorite?",
     "A meteor is the streak of light you see when a small space rock burns up in the atmosphere. If a piece "
     "survives and lands on the ground, that piece is called a meteorite."),
    ("Which planet has the most famous rings?",
     "Saturn has the most famous rings, made mostly of chunks of ice with some rock and dust. Jupiter, Uranus "
     "and Neptune have rings too, but they are much fainter.",
     "Mars has the most famous rings, made of red dust."),
]

GEOGRAPHY = [
    ("Which country has the largest population?",
     "According to United Nations estimates, India overtook China in 2023 as the most populous country, with "
     "more than 1.4 billion people.",
     "The United States has the largest population in the world."),
    ("What is the largest desert in the world?",
     "Counting cold deserts, Antarctica is the largest desert, because it gets very little precipitation. The "
     "largest hot desert is the Sahara in North Africa.",
     "The Gobi Desert in Mongolia is the largest desert in the world."),
    ("Which river flows through Cairo?",
     "The Nile flows through Cairo, the capital of Egypt, on its way north to the Mediterranean Sea.",
     "The Amazon flows through Cairo."),
    ("Name the capital of South Korea.",
     "The capital of South Korea is Seoul, which is also the country's largest city.",
     "The capital of South Korea is Busan."),
    ("What's the capital city of Argentina?",
     "Buenos Aires is the capital of Argentina. It lies on the Río de la Plata estuary and is the country's "
     "largest city.",
     "The capital of Argentina is Santiago."),
    ("Which continent is Egypt in?",
     "Egypt is mainly in Africa, in its north-east corner. The Sinai Peninsula lies in Asia, so Egypt is a "
     "transcontinental country."),
    ("What is the smallest country in the world?",
     "Vatican City is the smallest country, with an area of about 0.44 square kilometres. It is surrounded by "
     "Rome and is the seat of the Pope.",
     "Monaco is the smallest country in the world."),
    ("Which mountains are usually taken as the border between Europe and Asia?",
     "The Ural Mountains in Russia are usually taken as the boundary between Europe and Asia, continuing south "
     "along the Ural River to the Caspian Sea.",
     "The Alps form the border between Europe and Asia."),
    ("What is the deepest point in the ocean?",
     "The Challenger Deep in the Mariana Trench, in the western Pacific, is the deepest known point. It is "
     "nearly 11,000 metres deep, more than Mount Everest is tall.",
     "The deepest point is in the Atlantic Ocean near Iceland, about 3,000 metres down."),
    ("What are the Great Lakes?",
     "The Great Lakes are five large freshwater lakes on the border between the United States and Canada: "
     "Superior, Michigan, Huron, Erie and Ontario. Together they hold about a fifth of the world's fresh "
     "surface water."),
    ("Where is the Amazon rainforest?",
     "The Amazon rainforest covers much of northern South America. Most of it is in Brazil, with parts in Peru, "
     "Colombia and several other countries. It is the largest tropical rainforest on Earth.",
     "The Amazon rainforest is in central Africa, mostly in Kenya."),
    ("What is the equator?",
     "The equator is an imaginary line around the middle of Earth, halfway between the North and South Poles. "
     "It is at 0 degrees latitude and divides the planet into the Northern and Southern Hemispheres."),
    ("What language do most people in Mexico speak?",
     "Most people in Mexico speak Spanish; Mexico has more Spanish speakers than any other country. Dozens of "
     "Indigenous languages, such as Nahuatl, are also officially recognised.",
     "Most people in Mexico speak Portuguese."),
    ("What is the longest river in South America?",
     "The Amazon is the longest river in South America, at roughly 6,400 kilometres, and it carries more water "
     "than any other river in the world.",
     "The Orinoco is the longest river in South America."),
    ("Which city is the capital of Turkey?",
     "Ankara is the capital of Turkey. Istanbul is larger and better known, but the capital moved to Ankara in "
     "1923, when the republic was founded.",
     "Istanbul is the capital of Turkey."),
    ("Which ocean lies between Africa and Australia?",
     "The Indian Ocean lies between Africa and Australia. It is the third-largest ocean, after the Pacific and "
     "the Atlantic.",
     "The Atlantic Ocean lies between Africa and Australia."),
    ("What is a peninsula? Give an example.",
     "A peninsula is land surrounded by water on three sides and joined to a larger landmass on the fourth. "
     "Italy and Florida are well-known examples."),
    ("In which country is Machu Picchu?",
     "Machu Picchu is in Peru, high in the Andes above the Urubamba valley. The Inca built it in the fifteenth "
     "century.",
     "Machu Picchu is in Mexico, near Cancún."),
    ("How many countries are in the European Union?",
     "The European Union has 27 member countries. The number fell from 28 when the United Kingdom left in 2020.",
     "The European Union has 50 member countries."),
    ("Which US state is the largest by area?",
     "Alaska is the largest US state by area, more than twice the size of Texas, which comes second.",
     "Texas is the largest US state by area."),
    ("What is the capital of New Zealand?",
     "Wellington is the capital of New Zealand. It sits at the southern tip of the North Island; Auckland is "
     "the largest city.",
     "Auckland is the capital of New Zealand."),
    ("What is a river delta?",
     "A delta is a landform at the mouth of a river, where the water slows down and drops sand and mud, often "
     "splitting into many channels. The Nile and Mississippi deltas are famous examples."),
    ("Name three countries that border Germany.",
     "France, Poland and Austria all border Germany. Its other neighbours are Denmark, the Netherlands, Belgium, "
     "Luxembourg, Switzerland and the Czech Republic.",
     "Spain, Italy and Sweden all border Germany."),
    ("What is the time difference between London and New York?",
     "New York is usually five hours behind London. For a few weeks each year the gap is four hours, because "
     "the US and the UK change their clocks on different dates.",
     "New York is ten hours ahead of London."),
]

HISTORY = [
    ("When did World War II end?",
     "World War II ended in 1945. Germany surrendered in May, and Japan surrendered in August, signing the "
     "formal surrender on 2 September.",
     "World War II ended in 1939."),
    ("Who was the first person to walk on the Moon?",
     "Neil Armstrong was the first, on 20 July 1969, during the Apollo 11 mission. Buzz Aldrin followed him "
     "about twenty minutes later.",
     "Yuri Gagarin was the first person to walk on the Moon."),
    ("Who was the first President of the United States?",
     "George Washington was the first President of the United States, serving two terms from 1789 to 1797.",
     "Abraham Lincoln was the first President of the United States."),
    ("What was the Renaissance?",
     "The Renaissance was a period of renewed interest in art, science and classical learning in Europe, "
     "roughly from the 14th to the 17th century. It began in Italy and produced artists such as Leonardo da "
     "Vinci and Michelangelo."),
    ("Why did the Titanic sink?",
     "On the night of 14 April 1912 the Titanic struck an iceberg in the North Atlantic. The collision opened "
     "too many of its watertight compartments for the ship to stay afloat, and it sank early the next morning; "
     "about 1,500 people died.",
     "The Titanic sank in 1912 after it was hit by a torpedo."),
    ("Who invented the printing press with movable type in Europe?",
     "Johannes Gutenberg, a goldsmith from Mainz in Germany, developed it in the 1440s. His press made books "
     "much cheaper and helped spread ideas across Europe.",
     "Thomas Edison invented the printing press in the 1800s."),
    ("When did the Berlin Wall fall?",
     "The Berlin Wall fell on 9 November 1989, when East German authorities opened the border crossings. "
     "Germany was reunified less than a year later, in October 1990.",
     "The Berlin Wall fell in 1961."),
    ("What was the Industrial Revolution?",
     "The Industrial Revolution was the shift from making goods by hand to using machines and factories, "
     "starting in Britain in the late 18th century. Steam power, coal and iron transformed manufacturing, "
     "transport and where people lived."),
    ("Who was Cleopatra?",
     "Cleopatra VII was the last active ruler of the Ptolemaic Kingdom of Egypt, reigning until her death in "
     "30 BC. She is remembered for her intelligence and her alliances with Julius Caesar and Mark Antony."),
    ("Which civilisation built the pyramids of Giza?",
     "The ancient Egyptians built them about 4,500 years ago, as tombs for the pharaohs Khufu, Khafre and "
     "Menkaure.",
     "The Romans built the pyramids of Giza."),
    ("What was the Magna Carta?",
     "The Magna Carta was a charter agreed by King John of England in 1215. It limited the king's power and "
     "established that even the ruler was subject to the law, an idea that later inspired constitutional "
     "government."),
    ("Who discovered penicillin?",
     "Alexander Fleming discovered penicillin in 1928, when he noticed that a mould had killed the bacteria in "
     "one of his dishes. Howard Florey and Ernst Chain later turned it into a usable medicine.",
     "Louis Pasteur discovered penicillin in 1850."),
    ("In what year did the French Revolution begin?",
     "The French Revolution began in 1789. The storming of the Bastille on 14 July that year is its "
     "best-known symbol.",
     "The French Revolution began in 1812."),
    ("Who was Nelson Mandela?",
     "Nelson Mandela was a South African anti-apartheid leader who spent 27 years in prison. After his release "
     "he helped end apartheid, and in 1994 he became South Africa's first democratically elected president."),
    ("Who wrote Pride and Prejudice?",
     "Jane Austen wrote Pride and Prejudice, published in 1813. It follows Elizabeth Bennet and her changing "
     "view of the proud Mr Darcy.",
     "Charlotte Brontë wrote Pride and Prejudice."),
    ("Which empire did Genghis Khan found?",
     "Genghis Khan founded the Mongol Empire in the early 13th century. After his death it kept growing and "
     "became the largest connected land empire in history.",
     "Genghis Khan founded the Roman Empire."),
    ("How did the Olympic Games begin?",
     "The first Olympic Games were religious and athletic festivals held at Olympia in ancient Greece, in "
     "honour of Zeus, traditionally dated to 776 BC. The modern Olympics began in Athens in 1896."),
    ("When was the first powered aeroplane flight?",
     "Orville and Wilbur Wright made the first controlled, powered aeroplane flight on 17 December 1903, near "
     "Kitty Hawk, North Carolina. The first flight lasted 12 seconds.",
     "The first powered flight was made by Charles Lindbergh in 1927."),
    ("Who was Marie Curie?",
     "Marie Curie was a physicist and chemist who pioneered research on radioactivity and discovered polonium "
     "and radium. She was the first person to win two Nobel Prizes, in physics in 1903 and chemistry in 1911."),
    ("What was the Cold War?",
     "The Cold War was a long rivalry, from about 1947 to 1991, between the United States and the Soviet Union "
     "and their allies. They competed through an arms race, the space race and proxy wars rather than fighting "
     "each other directly."),
    ("What was the Silk Road?",
     "The Silk Road was a network of trade routes linking China with Central Asia, the Middle East and Europe. "
     "Besides silk, merchants carried spices, paper, ideas and religions along it for more than a thousand "
     "years."),
    ("Who wrote the novel 1984?",
     "George Orwell wrote Nineteen Eighty-Four, published in 1949. It describes a totalitarian state ruled by "
     "Big Brother, where the government watches everyone.",
     "Aldous Huxley wrote 1984."),
]

HOWTO = [
    ("How do I fix a flat bicycle tyre?",
     "Remove the wheel, let out any remaining air and lever one side of the tyre off the rim. Pull out the inner "
     "tube, find the hole and check the tyre for thorns. Fit a new or patched tube, push the tyre back on, "
     "inflate it to the pressure printed on the sidewall and refit the wheel."),
    ("What's the best way to learn touch typing?",
     "Use a free typing tutor and practise for 15 minutes a day. Keep your fingers on the home row, don't look "
     "at the keyboard, and aim for accuracy before speed; speed comes once the movements are automatic."),
    ("How do I cook rice on the stove?",
     "Rinse one cup of white rice, then put it in a pot with one and a half cups of water and a pinch of salt. "
     "Bring it to the boil, cover, turn the heat to low and simmer for 15 minutes. Let it rest, covered, for 5 "
     "minutes, then fluff it with a fork."),
    ("How do I take a screenshot on Windows?",
     "Press Windows + Shift + S and select an area; the image is copied to the clipboard. Print Screen copies "
     "the whole screen, and Windows + Print Screen saves it to your Pictures\\Screenshots folder."),
    ("How can I make cut flowers last longer?",
     "Trim the stems at an angle, remove any leaves that would sit under water, and use a clean vase. Change "
     "the water every two days, and keep the flowers away from direct sun and ripening fruit."),
    ("How do I write a good CV?",
     "Keep it to one or two pages and put your most relevant experience first. Describe achievements, with "
     "numbers where you can, rather than duties. Tailor it to each job, use a clean layout, and proofread it "
     "carefully."),
    ("My bathroom sink drains slowly. How do I fix it?",
     "First pull out hair from the drain with a drain tool or a bent wire. Then pour in half a cup of baking "
     "soda followed by a cup of vinegar, wait 15 minutes and flush with hot water. If it is still slow, use a "
     "plunger or clean the U-shaped trap under the sink."),
    ("I've never run before. How should I start?",
     "Start with walk-run intervals: one minute of easy jogging and two minutes of walking, repeated for 20 "
     "minutes, three times a week. Lengthen the running parts gradually, wear comfortable shoes, and go slowly "
     "enough that you could still hold a conversation."),
    ("What is the right way to wash your hands?",
     "Wet your hands, apply soap and scrub every surface, including the backs, between the fingers and under "
     "the nails, for at least 20 seconds. Rinse under running water and dry with a clean towel."),
    ("How can I make my phone battery last longer?",
     "Lower the screen brightness, shorten the screen timeout, and turn off location, Bluetooth and background "
     "refresh for apps that don't need them. Low-power mode helps too, and keeping the phone out of extreme "
     "heat protects the battery in the long run."),
    ("How should I prepare for an exam that is two weeks away?",
     "List the topics, spread them across the days, and keep the last two days for review. Test yourself with "
     "past papers or flashcards instead of just rereading notes, study in short focused sessions, and sleep "
     "well, especially the night before."),
    ("What's a good way to back up my photos?",
     "Follow the 3-2-1 rule: keep three copies, on two different kinds of storage, with one copy somewhere "
     "else. For example, keep the originals on your computer, a copy on an external drive and another in a "
     "cloud service."),
    ("How do I make a simple monthly budget?",
     "Add up your monthly income, then list fixed costs such as rent and bills. Decide how much goes to savings "
     "first, then set limits for flexible spending like food and entertainment. Track what you actually spend "
     "for a month and adjust."),
    ("How do I grow tomatoes from seed?",
     "Sow the seeds about half a centimetre deep in small pots of seed compost, six to eight weeks before the "
     "last frost. Keep them warm, moist and bright. Once the seedlings have a few true leaves and the nights "
     "are warm, plant them outside in a sunny spot with rich soil."),
    ("How do I tie a reef knot?",
     "Cross the left end over the right and tuck it under, then cross the right end over the left and tuck it "
     "under again, and pull both ends tight. It is good for tying bundles, but don't use it where safety "
     "depends on the knot."),
    ("How do I clean a cast-iron pan?",
     "Rinse it with hot water while it is still warm and scrub off food with a brush or coarse salt; a little "
     "soap is fine. Dry it completely over low heat, then rub a thin layer of oil over the surface to stop it "
     "rusting."),
    ("How can I memorise a short speech?",
     "Break it into sections and learn one at a time, picking a keyword for each. Say it out loud many times, "
     "record yourself and listen back, then practise without notes. A rehearsal in front of a friend helps "
     "too."),
    ("How do I turn a fraction into a percentage?",
     "Divide the top number by the bottom number, then multiply by 100. For example, 3/8 = 0.375, and "
     "0.375 × 100 = 37.5%.",
     "Add the top and bottom numbers together, so 3/8 becomes 11%."),
    ("What's the safest way to defrost frozen meat?",
     "The safest way is in the fridge overnight. If you need it sooner, seal it in a bag and put it in cold "
     "water, changing the water every 30 minutes, or use the microwave's defrost setting and cook it straight "
     "away. Don't leave it out on the counter.",
     "Leave it on the kitchen counter all day; warm air defrosts it fastest and it is perfectly safe."),
    ("How do I politely end a conversation that is going on too long?",
     "Sum up and signal that you need to go: \"It's been great catching up. I have to get going now, but let's "
     "talk again soon.\" A warm tone and a brief reason, like another task, make it feel natural."),
    ("How should I store fresh herbs like parsley and coriander?",
     "Trim the stems and stand the herbs in a glass of water, like flowers, loosely covered with a bag, in the "
     "fridge. Basil is the exception: keep it at room temperature, out of direct sun."),
    ("How do I change the default search engine in my browser?",
     "Open the browser's settings and look for a section called Search or Search engine. Pick the one you want "
     "from the list and set it as default. In most browsers it takes effect immediately."),
]

WRITING = [
    ("Write a haiku about the moon.",
     "Pale lantern of night,\nshe borrows the sun's warm gold\nand spends it on seas.",
     "The Moon is Earth's only natural satellite and is about 384,400 kilometres away."),
    ("Compose a haiku about a city at night.",
     "Neon on wet streets,\nthe last bus hums past shut shops,\none window still lit."),
    ("Can you write a haiku about spring rain?",
     "Warm rain on new leaves,\nthe garden drinks without sound,\nbuds open like palms."),
    ("Write a haiku about a cat asleep in the sun.",
     "Curled in a warm square,\nthe cat dreams of slow, fat birds,\nwhiskers twitch, then still."),
    ("Write a two-sentence horror story.",
     "The new smart speaker in our kitchen kept answering questions nobody had asked. Last night it said, "
     "quite clearly, \"She's in the hallway now,\" and I live alone."),
    ("Write a two-sentence story about a dragon who is afraid of fire.",
     "Ember was the only dragon in the valley who flinched every time he sneezed a spark. So he became the "
     "village's most careful baker, using his breath only to warm the bread, one gentle puff at a time."),
    ("Tell me a very short story about a lighthouse keeper.",
     "For forty years, Agnes climbed the lighthouse stairs every evening to light the lamp. On the night the "
     "coast guard replaced it with an automatic beam, she climbed them anyway and sat beside the new light "
     "until dawn, keeping it company."),
    ("Write an email subject line inviting my team to lunch.",
     "Two options: \"You're invited: team lunch on Friday at 12:30\" or \"Lunch on us this Friday, who's in?\" "
     "Both say what it is and when, so people can reply quickly."),
    ("Suggest an email subject line telling customers their delivery is delayed.",
     "\"Update on your order: new delivery date\". It is calm and clear, and it tells the customer exactly what "
     "the email is about without sounding alarming."),
    ("Give me a subject line for an email asking my manager for a day off.",
     "\"Leave request for Friday 14 June\". A short, specific subject line lets your manager see the request "
     "and the date at a glance. Adjust the date to yours."),
    ("Write a short birthday message for a coworker.",
     "Happy birthday! Thanks for making the office a brighter place and for always being ready to help. I hope "
     "you have a relaxing day and a great year ahead."),
    ("Write a limerick about a forgetful wizard.",
     "A wizard who lived in a tower\nforgot every spell in his power.\nHe'd wave with a shout,\nbut nothing "
     "came out,\nexcept, now and then, a small flower."),
    ("Come up with a slogan for a bike repair shop.",
     "\"We fix it, you ride it.\" Another option: \"Back on two wheels by tomorrow.\" Both are short and "
     "friendly and say what the shop does."),
    ("Write a one-sentence product description for a reusable water bottle.",
     "This leak-proof stainless steel bottle keeps drinks cold for 24 hours and hot for 12, so you can skip "
     "single-use plastic wherever you go."),
    ("Write a short, friendly out-of-office reply.",
     "Thank you for your email. I'm out of the office until Monday 3 March with limited access to email, and "
     "I'll reply as soon as I'm back. For anything urgent, please contact Sam at sam@example.com."),
    ("Write one encouraging sentence for someone starting a new job.",
     "Everyone who is good at this job was once new at it too, so ask questions, be patient with yourself, and "
     "trust that each week it will feel a little more like yours."),
    ("Write a short rhyming poem about Monday mornings.",
     "The alarm rings twice, the kettle sighs,\nthe coffee hasn't reached my eyes.\nBut sunlight spills across "
     "the floor,\nand Monday's not so grim once more."),
    ("Write a social media post announcing that our bakery is opening.",
     "Fresh bread, warm cinnamon rolls and good coffee: our bakery on Elm Street opens this Saturday at 8am! "
     "Come by and get a free pastry with your first coffee. 🥐"),
    ("Write a two-sentence story about a time traveller.",
     "Leo travelled back a hundred years to warn the town about the great flood, but nobody believed a "
     "stranger in strange clothes. So he stayed, built the flood wall himself, and that is why the town square "
     "has a statue of a man in trainers."),
    ("Give me an opening line for a mystery novel.",
     "The last guest to arrive at Harrow House was already dead, though it took the others until dessert to "
     "notice."),
    ("Write a thank-you message to my child's teacher.",
     "Thank you for your patience and encouragement this year. You made hard topics feel possible and helped "
     "our child believe in themselves. We are truly grateful for everything you have done."),
    ("Write a short apology to a customer for a slow reply.",
     "Dear customer, I'm sorry for the slow reply to your message, and thank you for your patience. Your order "
     "has now been checked and will ship tomorrow; I'll send you the tracking number as soon as it is "
     "available."),
    ("Suggest a title for a blog post about travelling on a budget.",
     "\"Travel More, Spend Less: 10 Simple Ways to Cut Your Trip Costs\". It promises a clear benefit and a "
     "practical list, which tends to attract readers."),
    ("Write a riddle whose answer is a shadow.",
     "I follow you all day but vanish at night. I grow tall in the evening and shrink at noon. I copy every "
     "move you make but never make a sound. What am I? (A shadow.)"),
    ("Describe autumn in three sentences.",
     "The air turns crisp, and mornings smell of damp leaves and wood smoke. Trees blaze gold, orange and red "
     "before letting their leaves drift down. Days grow shorter, and evenings call for warm drinks and thick "
     "jumpers."),
    ("Write a short acrostic poem for the word SUN.",
     "Shining over sleepy hills,\nUnfolding light on window sills,\nNever late to start the day."),
    ("Write a four-line poem about the ocean.",
     "The ocean breathes in silver light,\nit folds the stars in waves at night,\nit keeps the secrets ships "
     "have known\nand sings them back to sand and stone."),
]

REWRITE = [
    ("Rewrite this in a formal tone: 'Sorry, I can't make it to the meeting, something came up.'",
     "I apologise, but I will be unable to attend the meeting due to an unforeseen commitment.",
     "Sorry, can't make the meeting, something came up lol."),
    ("Make this more polite: 'Send me the file now.'",
     "Could you please send me the file when you have a moment? Thank you!",
     "Send me the file immediately."),
    ("Make this sound more professional: 'Our app is super cool and tons of people like it.'",
     "Our app is thoughtfully designed and has been well received by a large number of users."),
    ("Make this casual: 'Please be advised that the office will be closed on Friday.'",
     "Just a heads-up: the office is closed this Friday!"),
    ("Fix the grammar in this sentence: 'Me and my brother goes to school by bus.'",
     "My brother and I go to school by bus. The subject \"my brother and I\" is plural, so the verb is \"go\", "
     "and \"I\" is used because it is part of the subject.",
     "Me and my brother goes to school on bus."),
    ("Correct the spelling: 'I recieved the pakage yesturday.'",
     "I received the package yesterday.",
     "I recieved the package yesturday."),
    ("Can you fix this sentence? 'Its a beautiful day, lets go outside.'",
     "It's a beautiful day; let's go outside. \"It's\" (it is) and \"let's\" (let us) are contractions, so they "
     "need apostrophes, and a semicolon or full stop correctly joins the two clauses."),
    ("Correct this: 'There house is bigger then ours.'",
     "Their house is bigger than ours. \"Their\" shows possession, and \"than\" is used for comparisons, while "
     "\"then\" refers to time.",
     "There house is bigger than ours."),
    ("Add the missing punctuation: 'lets eat grandma'",
     "\"Let's eat, Grandma!\" The comma shows you are talking to Grandma rather than suggesting eating her, and "
     "\"let's\" needs an apostrophe."),
    ("Summarise this in one sentence: 'The city council met on Tuesday to discuss the new park. After a long "
     "debate about costs, they agreed to build it next spring, but with a smaller playground than originally "
     "planned.'",
     "On Tuesday the city council agreed to build the new park next spring, though with a smaller playground "
     "to save money.",
     "The city council met to talk about some things."),
    ("Summarise: 'Honeybees tell each other where food is with a movement called the waggle dance. The angle "
     "of the dance shows the direction relative to the sun, and its length shows how far away the food is.'",
     "Honeybees use the waggle dance to share where food is: its angle gives the direction relative to the sun "
     "and its length gives the distance.",
     "Honeybees make honey from flowers."),
    ("Give me a one-line summary: 'Our quarterly sales rose 12% thanks to strong online orders, but store "
     "sales fell slightly, and we expect similar trends next quarter.'",
     "Sales grew 12% this quarter on strong online demand despite a small dip in stores, and the same pattern "
     "is expected next quarter.",
     "Sales fell 12% this quarter because online orders were weak."),
    ("Shorten this sentence: 'At this point in time, we are currently in the process of reviewing all of the "
     "applications that we have received.'",
     "We are now reviewing all the applications we received. This keeps the meaning and drops padding such as "
     "\"at this point in time\" and \"in the process of\"."),
    ("Rewrite in the passive voice: 'The chef prepared the meal.'",
     "The meal was prepared by the chef.",
     "The chef was preparing the meal."),
    ("Rewrite in the active voice: 'The ball was kicked by the boy.'",
     "The boy kicked the ball.",
     "The ball was being kicked by the boy."),
    ("Paraphrase the proverb 'The early bird catches the worm.'",
     "People who start early or act quickly are more likely to succeed than those who wait."),
    ("Simplify this for a young child: 'Precipitation is expected throughout the afternoon.'",
     "It will probably rain this afternoon, so remember your umbrella!"),
    ("Turn this statement into a question: 'The library closes at six.'",
     "Does the library close at six? You could also ask: \"What time does the library close?\""),
    ("Make this sentence more concise: 'Due to the fact that it was raining, we made the decision to stay "
     "inside.'",
     "Because it was raining, we decided to stay inside."),
    ("Rewrite this text as a professional email sentence: 'hey can u check the numbers b4 the call tmrw?'",
     "Could you please review the figures before tomorrow's call?"),
    ("Put this into plain English: 'Pursuant to our agreement, remuneration shall be disbursed on a monthly "
     "basis.'",
     "As we agreed, you will be paid once a month."),
    ("Change this sentence to the past tense: 'She walks to the shop and buys some bread.'",
     "She walked to the shop and bought some bread.",
     "She walked to the shop and buyed some bread."),
    ("Make this headline less sensational: 'SHOCKING: Local Cafe Raises Coffee Price by 10 Cents!'",
     "Local cafe raises coffee price by 10 cents"),
    ("Put these words in alphabetical order: pear, apple, orange, banana.",
     "apple, banana, orange, pear",
     "apple, banana, pear, orange"),
    ("Make this sentence more vivid: 'The dog ran across the field.'",
     "The shaggy dog bounded across the dewy field, ears flapping and tail wagging wildly."),
    ("Rewrite this sentence without the jargon: 'We need to leverage our synergies to move the needle.'",
     "We need to work together better to make real progress."),
]

MATH = [
    ("A shirt costs $40 and is 25% off. What is the sale price?",
     "25% of $40 is 0.25 × 40 = $10. Subtract the discount: 40 - 10 = 30. The sale price is $30.",
     "25% off $40 is $15, so the sale price is $25."),
    ("If I read 15 pages a day, how long will it take me to finish a 330-page book?",
     "330 ÷ 15 = 22, so it will take you 22 days.",
     "330 ÷ 15 = 20, so it will take you 20 days."),
    ("A car travels 180 km in 2 hours and 30 minutes. What is its average speed?",
     "2 hours 30 minutes is 2.5 hours. Average speed = distance ÷ time = 180 ÷ 2.5 = 72 km/h.",
     "Average speed = 180 ÷ 2 = 90 km/h."),
    ("Sara has three times as many marbles as Tom. Together they have 48. How many does each have?",
     "Let Tom have x marbles, so Sara has 3x. Then x + 3x = 4x = 48, so x = 12. Tom has 12 marbles and Sara has "
     "36.",
     "Sara has 32 marbles and Tom has 16."),
    ("What is the average of 4, 8, 15 and 21?",
     "Add them: 4 + 8 + 15 + 21 = 48. Divide by how many numbers there are: 48 ÷ 4 = 12. The average is 12.",
     "Add them: 4 + 8 + 15 + 21 = 48, so the average is 48."),
    ("A recipe uses 3 eggs for 12 pancakes. How many eggs do I need for 20 pancakes?",
     "3 eggs for 12 pancakes is 1 egg for every 4 pancakes. For 20 pancakes you need 20 ÷ 4 = 5 eggs.",
     "You need 20 - 12 + 3 = 11 eggs."),
    ("Is 91 a prime number?",
     "No. 91 = 7 × 13, so it has divisors other than 1 and itself. It looks prime because it is odd and not "
     "divisible by 3 or 5.",
     "Yes, 91 is a prime number."),
    ("What is 7/8 as a decimal?",
     "7 ÷ 8 = 0.875. As a percentage, that is 87.5%.",
     "7/8 as a decimal is 0.78."),
    ("A train leaves at 09:40 and arrives at 13:15. How long is the journey?",
     "From 09:40 to 13:40 would be 4 hours, and 13:15 is 25 minutes earlier than that. So the journey takes "
     "3 hours 35 minutes.",
     "13:15 - 09:40 = 4 hours 25 minutes."),
    ("What is the area of a rectangle 7 m long and 4.5 m wide?",
     "Area = length × width = 7 × 4.5 = 31.5 square metres.",
     "Area = 7 + 4.5 = 11.5 square metres."),
    ("A pizza is cut into 8 slices and I eat 3. What fraction is left?",
     "8 - 3 = 5 slices are left, so 5/8 of the pizza remains. That is 62.5%.",
     "3/8 of the pizza is left."),
    ("How many seconds are in an hour?",
     "There are 60 minutes in an hour and 60 seconds in a minute, so 60 × 60 = 3,600 seconds.",
     "There are 60 seconds in an hour."),
    ("What comes next in the sequence 2, 6, 12, 20, 30?",
     "The gaps are 4, 6, 8 and 10, so the next gap is 12: 30 + 12 = 42. Each term is n × (n + 1).",
     "The next number is 40, because the sequence goes up by 10."),
    ("What is the least common multiple of 4 and 6?",
     "Multiples of 4 are 4, 8, 12, ... and multiples of 6 are 6, 12, ... The smallest one they share is 12, so "
     "the LCM is 12.",
     "The least common multiple of 4 and 6 is 24."),
    ("I saved $15 a week for 12 weeks and then spent $70. How much do I have left?",
     "You saved 15 × 12 = $180. After spending $70 you have 180 - 70 = $110 left.",
     "You have 15 + 12 - 70, so you are $43 short."),
    ("Round 3.14159 to two decimal places.",
     "3.14. The third decimal digit is 1, which is less than 5, so the second decimal digit stays the same.",
     "3.15"),
    ("A class has 12 boys and 18 girls. What percentage of the class are girls?",
     "There are 12 + 18 = 30 pupils. Girls make up 18 ÷ 30 = 0.6 of the class, which is 60%.",
     "18 ÷ 12 = 1.5, so 150% of the class are girls."),
    ("Three friends split a $57 restaurant bill equally. How much does each pay?",
     "57 ÷ 3 = 19, so each friend pays $19.",
     "Each friend pays $17."),
]

PYTHON = [
    ("Write a Python function that counts the vowels in a string.",
     "```python\ndef count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in \"aeiou\")\n```\n"
     "For example, count_vowels(\"Banana\") returns 3."),
    ("How do I reverse a list in Python?",
     "Use my_list.reverse() to reverse it in place, or my_list[::-1] to get a new reversed copy. If you only "
     "need to loop backwards, reversed(my_list) gives an iterator without copying."),
    ("Write a Python function that checks whether a string is a palindrome.",
     "```python\ndef is_palindrome(s):\n    cleaned = \"\".join(ch.lower() for ch in s if ch.isalnum())\n"
     "    return cleaned == cleaned[::-1]\n```\nIt ignores case, spaces and punctuation, so "
     "is_palindrome(\"Never odd or even\") returns True.",
     "```python\ndef is_palindrome(s):\n    return s == s.reverse()\n```"),
    ("How do I get today's date in Python?",
     "```python\nfrom datetime import date\n\nprint(date.today())  # e.g. 2025-05-17\n```\nUse datetime.now() "
     "from the same module if you also need the time."),
    ("Write a Python list comprehension for the squares of 1 to 10.",
     "```python\nsquares = [n * n for n in range(1, 11)]\n```\nThis gives [1, 4, 9, 16, 25, 36, 49, 64, 81, 100]. "
     "range stops before 11, so 10 is the last number squared.",
     "```python\nsquares = [n * 2 for n in range(10)]\n```"),
    ("What is the difference between a list and a tuple in Python?",
     "Lists are mutable: you can add, remove and change items. Tuples cannot be changed once created. Lists "
     "use square brackets, [1, 2], and tuples use parentheses, (1, 2). Tuples can be dictionary keys; lists "
     "cannot.",
     "There is no difference; lists and tuples are two names for the same type."),
    ("How do I remove duplicates from a Python list but keep the original order?",
     "Use a dict, which remembers insertion order:\n```python\nunique = list(dict.fromkeys(items))\n```\nFor "
     "example, [3, 1, 3, 2, 1] becomes [3, 1, 2]. list(set(items)) also removes duplicates, but loses the "
     "order."),
    ("Write a Python function that returns the factorial of n.",
     "```python\ndef factorial(n):\n    result = 1\n    for i in range(2, n + 1):\n        result *= i\n"
     "    return result\n```\nfactorial(5) returns 120. The standard library also has math.factorial.",
     "```python\ndef factorial(n):\n    result = 1\n    for i in range(n):\n        result *= i\n"
     "    return result\n```"),
    ("How do I read a JSON file in Python?",
     "```python\nimport json\n\nwith open(\"data.json\", encoding=\"utf-8\") as f:\n    data = json.load(f)\n```\n"
     "data is then a dict or a list, depending on what the file contains."),
    ("What does if __name__ == \"__main__\": do in Python?",
     "It checks whether the file is being run directly. The code under it runs when you execute python "
     "script.py, but not when another module imports the file, so it is the usual place for a script's entry "
     "point."),
    ("Write Python code that counts how often each word appears in a sentence.",
     "```python\nfrom collections import Counter\n\nsentence = \"the cat and the hat\"\n"
     "counts = Counter(sentence.split())\nprint(counts)  # Counter({'the': 2, 'cat': 1, 'and': 1, 'hat': 1})\n```"),
    ("How do I sort a list of dictionaries by one of their keys in Python?",
     "Pass a key function to sorted:\n```python\npeople = [{\"name\": \"Ana\", \"age\": 31}, "
     "{\"name\": \"Ben\", \"age\": 25}]\nby_age = sorted(people, key=lambda p: p[\"age\"])\n```\nAdd "
     "reverse=True for descending order."),
    ("What does print(7 // 2) output in Python?",
     "It prints 3. The // operator is floor division: it divides and rounds down to a whole number. 7 / 2 "
     "would give 3.5.",
     "It prints 3.5."),
    ("Write a Python function that converts Celsius to Fahrenheit.",
     "```python\ndef celsius_to_fahrenheit(c):\n    return c * 9 / 5 + 32\n```\nFor example, "
     "celsius_to_fahrenheit(100) returns 212.0.",
     "```python\ndef celsius_to_fahrenheit(c):\n    return (c - 32) * 5 / 9\n```"),
    ("How can I check whether a key exists in a Python dictionary?",
     "Use the in operator: if \"name\" in person: ... checks the keys, not the values. To read a value with a "
     "fallback instead, use person.get(\"name\", \"unknown\")."),
    ("Write a Python loop that prints the numbers from 10 down to 1.",
     "```python\nfor n in range(10, 0, -1):\n    print(n)\n```\nrange stops before its second argument, so 0 "
     "is not printed.",
     "```python\nfor n in range(10, 1, -1):\n    print(n)\n```"),
    ("How do I install a Python package?",
     "Use pip from the command line: python -m pip install requests. It is best to do this inside a virtual "
     "environment, made with python -m venv .venv, so each project keeps its own packages."),
    ("What is an f-string in Python?",
     "An f-string is a string literal prefixed with f that can embed expressions in curly braces. With "
     "name = \"Ada\", the f-string f\"Hello, {name}!\" gives \"Hello, Ada!\". They exist since Python 3.6."),
    ("Write a Python function that returns only the even numbers from a list.",
     "```python\ndef evens(numbers):\n    return [n for n in numbers if n % 2 == 0]\n```\nevens([1, 2, 3, 4, 6]) "
     "returns [2, 4, 6].",
     "```python\ndef evens(numbers):\n    return [n for n in numbers if n % 2 == 1]\n```"),
    ("Why does 0.1 + 0.2 not equal 0.3 in Python?",
     "Floats are stored in binary, where 0.1 and 0.2 cannot be represented exactly, so the sum is "
     "0.30000000000000004. Compare floats with math.isclose(a, b) instead of ==, or use the decimal module when "
     "exact decimal arithmetic matters."),
    ("How do I write text to a file in Python?",
     "```python\nwith open(\"notes.txt\", \"w\", encoding=\"utf-8\") as f:\n    f.write(\"Hello, file!\\n\")\n```\n"
     "Mode \"w\" replaces the file's contents; use \"a\" to append instead."),
]

CLASSIFY = [
    ("Classify the sentiment of this review as positive, negative or neutral: 'The battery lasts all day and "
     "the screen is gorgeous.'",
     "Positive. The reviewer praises both the battery life and the screen.",
     "Negative."),
    ("What is the sentiment of this tweet: 'Stuck in traffic for two hours again. Fantastic.'",
     "Negative. \"Fantastic\" is sarcastic here: being stuck in traffic for two hours is clearly a complaint.",
     "Positive, because the tweet says \"Fantastic\"."),
    ("Is this sentence positive or negative? 'I expected more from such an expensive hotel.'",
     "Negative. The writer is disappointed because the hotel did not live up to its high price.",
     "Positive. The writer says the hotel is expensive, which means it is luxurious."),
    ("Label the sentiment: 'The meeting has been moved to 3 pm.'",
     "Neutral. It simply reports a schedule change without expressing any opinion or feeling.",
     "Negative, because meetings are annoying."),
    ("Sentiment check: 'Not bad at all, actually better than I thought it would be!'",
     "Positive. \"Not bad\" is meant as praise here, and \"better than I thought\" shows the writer was "
     "pleasantly surprised.",
     "Negative, because it contains the word \"bad\"."),
    ("Is this a question, a command or a statement? 'Close the window before you leave.'",
     "It is a command (an imperative sentence): it tells someone to do something.",
     "It is a question."),
    ("Which of these is a mammal: shark, dolphin or tuna?",
     "The dolphin is a mammal. It breathes air through a blowhole and feeds its young with milk, while sharks "
     "and tuna are fish.",
     "The shark is a mammal."),
    ("Sort these into fruits and vegetables: carrot, mango, spinach, grape.",
     "Fruits: mango and grape. Vegetables: carrot and spinach.",
     "Fruits: carrot and grape. Vegetables: mango and spinach."),
    ("Is this email spam? 'Congratulations! You've won a $1,000 gift card. Click here within 24 hours to "
     "claim your prize.'",
     "Almost certainly spam, and possibly phishing. An unexpected prize, pressure to act within 24 hours and a "
     "link to click are classic warning signs. Don't click the link; just delete the email.",
     "No, it looks genuine. Click the link quickly so you don't miss the prize."),
    ("Which word is the odd one out: apple, banana, carrot, cherry?",
     "Carrot is the odd one out: it is a vegetable, while the others are fruits.",
     "Banana is the odd one out."),
    ("Is 'quickly' an adjective or an adverb?",
     "\"Quickly\" is an adverb: it describes how an action is done, as in \"She ran quickly.\" The adjective "
     "form is \"quick\".",
     "\"Quickly\" is an adjective."),
    ("What kind of sentence is this: 'What a wonderful surprise!'",
     "It is an exclamatory sentence: it expresses strong feeling and ends with an exclamation mark."),
    ("Is a bat a bird or a mammal?",
     "A bat is a mammal. It has fur, gives birth to live young and feeds them milk, and it is the only mammal "
     "capable of true flight.",
     "A bat is a bird, because it has wings and flies."),
    ("What language is this sentence in? 'Ich habe heute keine Zeit.'",
     "The sentence is in German. It means \"I don't have time today.\"",
     "The sentence is in Dutch and means \"I am hungry today.\""),
    ("Classify this customer message by topic (billing, delivery or technical): 'I was charged twice for "
     "the same order.'",
     "Billing. The customer is reporting a duplicate charge, which is a payment problem.",
     "Delivery."),
    ("Is the word 'run' a noun or a verb in this sentence: 'I went for a run this morning.'",
     "Here \"run\" is a noun: it follows \"a\" and names an activity. In \"I run every day\" it would be a verb.",
     "\"Run\" is a verb in this sentence."),
]

LISTS = [
    ("Name three noble gases.",
     "Helium, neon and argon are noble gases. Krypton, xenon and radon belong to the group too. They hardly "
     "react because their outer electron shells are full.",
     "Oxygen, nitrogen and hydrogen are noble gases."),
    ("Give me four examples of renewable energy.",
     "Solar, wind, hydroelectric and geothermal power. They come from sources that are naturally replenished, "
     "unlike coal, oil and gas.",
     "Coal, oil, natural gas and solar power."),
    ("Name three countries in South America.",
     "Brazil, Argentina and Colombia. Others include Peru, Chile, Ecuador, Venezuela, Bolivia, Paraguay, "
     "Uruguay, Guyana and Suriname.",
     "Mexico, Spain and Cuba."),
    ("List the planets in order from the Sun.",
     "Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune. A common memory aid is \"My Very "
     "Educated Mother Just Served Us Nachos\".",
     "Mercury, Venus, Mars, Earth, Jupiter, Uranus, Saturn and Neptune."),
    ("What are the three branches of the US government?",
     "The legislative branch (Congress) makes laws, the executive branch (led by the President) carries them "
     "out, and the judicial branch (the courts, headed by the Supreme Court) interprets them.",
     "The army, the navy and the air force."),
    ("Give me three tips for a job interview.",
     "Research the company and the role beforehand. Prepare short examples that show your achievements. At "
     "the end, ask a thoughtful question, such as what success looks like in the first six months."),
    ("Name five vegetables that grow well in pots.",
     "Tomatoes, lettuce, peppers, radishes and spinach all grow well in pots, as long as they get enough sun "
     "and regular water."),
    ("What are the primary colours of light?",
     "Red, green and blue. Mixed together in equal amounts they make white light, which is how screens produce "
     "every colour.",
     "Red, yellow and black."),
    ("Suggest three healthy breakfast ideas.",
     "Porridge with banana and a handful of nuts; Greek yoghurt with berries and seeds; or wholegrain toast "
     "with scrambled eggs and tomatoes."),
    ("Name four animals that live in the Arctic.",
     "Polar bears, Arctic foxes, walruses and snowy owls. Arctic hares and narwhals live there too.",
     "Penguins, polar bears, lions and kangaroos."),
    ("What are the four seasons?",
     "Spring, summer, autumn (also called fall) and winter. In temperate regions they bring changes in "
     "temperature, day length and plant life."),
    ("Give me three ideas for a rainy day with kids.",
     "Build a blanket fort and read stories inside it, bake and decorate biscuits together, or set up a "
     "treasure hunt around the house with simple clues."),
    ("List three ways to cut down on plastic waste.",
     "Carry a reusable bag and water bottle. Buy loose fruit and vegetables instead of packaged ones. Choose "
     "refillable or bulk products, such as soap and cleaning liquids."),
    ("Name three famous classical composers.",
     "Johann Sebastian Bach, Wolfgang Amadeus Mozart and Ludwig van Beethoven are three of the most famous.",
     "Elvis Presley, Bob Marley and Freddie Mercury."),
    ("What are the main parts of a flower?",
     "The petals attract pollinators, the sepals protect the bud, the stamens make pollen, and the pistil, "
     "made of the stigma, style and ovary, receives pollen and develops seeds."),
    ("Name three programming languages and what they are often used for.",
     "Python is popular for data analysis, scripting and machine learning. JavaScript runs in web browsers and "
     "makes websites interactive. C is used for operating systems and small devices where speed and control "
     "matter."),
    ("List the first five prime numbers.",
     "2, 3, 5, 7 and 11. Note that 1 is not prime, because a prime has exactly two divisors.",
     "1, 2, 3, 5 and 7."),
    ("How can I tell that bread dough has been kneaded enough?",
     "It feels smooth and elastic, it springs back slowly when you poke it, and a small piece stretches thin "
     "enough to let light through without tearing, the so-called windowpane test."),
    ("Name three plays by Shakespeare.",
     "Hamlet, Macbeth and A Midsummer Night's Dream. Others include Romeo and Juliet, Othello and The Tempest.",
     "Hamlet, The Odyssey and Don Quixote."),
    ("What are the seven continents?",
     "Africa, Antarctica, Asia, Australia (or Oceania), Europe, North America and South America. Asia is the "
     "largest and Australia the smallest.",
     "Africa, Asia, Europe, America, India, Greenland and the Arctic."),
]

DEFINE = [
    ("Define 'empathy'.",
     "Empathy is the ability to understand and share another person's feelings: to imagine what a situation "
     "is like from their point of view.",
     "Empathy means feeling sorry for yourself."),
    ("What does 'procrastinate' mean?",
     "To procrastinate is to keep putting off something you should do, often by doing less important things "
     "instead.",
     "To procrastinate means to plan something carefully in advance."),
    ("What is a metaphor?",
     "A metaphor describes something by saying it is something else, to suggest a likeness. \"Time is a "
     "thief\" suggests that time takes things from us. Unlike a simile, it doesn't use \"like\" or \"as\".",
     "A metaphor is a word that sounds like the noise it describes, such as \"buzz\"."),
    ("What is a simile?",
     "A simile compares two things using \"like\" or \"as\", for example \"as brave as a lion\" or \"she swims "
     "like a fish\"."),
    ("What does GDP stand for, and what does it measure?",
     "GDP stands for gross domestic product: the total value of all goods and services produced in a country "
     "in a given period, usually a year. It is a common measure of the size of an economy.",
     "GDP stands for global debt percentage, the share of the world's debt a country owes."),
    ("What is an algorithm?",
     "An algorithm is a precise, step-by-step set of instructions for solving a problem or carrying out a "
     "task. A recipe is an everyday example; in computing, a method for sorting a list is a classic one."),
    ("What does 'ubiquitous' mean?",
     "Ubiquitous means present or found everywhere. For example: \"Smartphones have become ubiquitous.\"",
     "Ubiquitous means very rare and hard to find."),
    ("What is a democracy?",
     "A democracy is a system of government in which power belongs to the people, who vote in free elections, "
     "either directly on decisions or for representatives who make them."),
    ("What is a hypothesis?",
     "A hypothesis is a testable explanation or prediction that scientists check with experiments or "
     "observations, for example \"Plants grow taller when they get more light.\""),
    ("Explain what an API is in simple terms.",
     "An API (application programming interface) is a set of rules that lets one program ask another for data "
     "or services. Like a waiter carrying orders to the kitchen and food back, it passes requests and "
     "responses between programs."),
    ("What is a recession?",
     "A recession is a significant, widespread decline in economic activity lasting months, usually with "
     "falling output, rising unemployment and lower spending. A common rule of thumb is two quarters in a row "
     "of shrinking GDP."),
    ("What is cloud computing?",
     "Cloud computing means using computing resources such as storage, servers and software over the internet "
     "from a provider, instead of owning and running them yourself. You pay for what you use and can scale up "
     "or down quickly."),
    ("What is an ecosystem?",
     "An ecosystem is a community of living things, such as plants, animals and microbes, interacting with "
     "each other and with their surroundings, like water, soil and climate. A pond, a forest and a coral reef "
     "are examples."),
    ("What does 'irony' mean?",
     "Irony is a contrast between what is expected and what actually happens, or between what is said and "
     "what is meant. A fire station burning down is an example of situational irony."),
    ("What is a carbon footprint?",
     "A carbon footprint is the total amount of greenhouse gases, mainly carbon dioxide, released by the "
     "activities of a person, product or organisation, such as travel, heating and the food they consume."),
    ("What is encryption?",
     "Encryption scrambles data with a key so that only someone with the right key can read it. It protects "
     "messages, passwords and payments if they are intercepted."),
    ("What is a palindrome?",
     "A palindrome is a word, phrase or number that reads the same backwards as forwards, such as \"level\", "
     "\"racecar\" or 12321.",
     "A palindrome is a word that means the opposite of another word."),
    ("What does RSVP mean on an invitation?",
     "RSVP comes from the French \"répondez s'il vous plaît\", meaning \"please reply\". It asks you to tell the "
     "host whether you will come.",
     "RSVP means \"Really Special VIP Party\"."),
    ("What is a mortgage?",
     "A mortgage is a loan for buying property, with the property itself as security. You repay it with "
     "interest over many years, and if you stop paying, the lender can take the property."),
    ("What is an adverb?",
     "An adverb modifies a verb, an adjective or another adverb, often telling how, when or where. In \"She "
     "sings beautifully\", \"beautifully\" is an adverb.",
     "An adverb is a word that names a person, place or thing."),
    ("What is biodiversity?",
     "Biodiversity is the variety of life in a place: the number of different species, the genetic "
     "differences within them and the range of ecosystems. High biodiversity makes nature more resilient."),
    ("Define 'opportunity cost'.",
     "Opportunity cost is the value of the best alternative you give up when you make a choice. If you spend "
     "Saturday working, the opportunity cost might be the hike you could have gone on instead."),
    ("What is an idiom? Give an example.",
     "An idiom is a phrase whose meaning can't be worked out from its individual words. \"Break the ice\" "
     "means to make people feel more relaxed at the start of a conversation, not to smash frozen water."),
    ("What is a neural network?",
     "A neural network is a machine-learning model made of layers of simple connected units. Each connection "
     "has a weight, and training adjusts the weights so the network maps inputs, such as images, to useful "
     "outputs, such as labels."),
    ("When should I use 'fewer' and when 'less'?",
     "Use \"fewer\" for things you can count (fewer apples, fewer people) and \"less\" for amounts you can't "
     "count (less water, less time).",
     "They mean exactly the same, so \"less people\" and \"fewer water\" are both fine."),
    ("What is a budget deficit?",
     "A budget deficit is when a government, company or household spends more than it takes in over a period. "
     "The gap is usually covered by borrowing.",
     "A budget deficit is money left over at the end of the year."),
]

ADVICE = [
    ("I get nervous speaking in public. Any advice?",
     "Nerves are normal, even for experienced speakers. Prepare well and rehearse out loud several times. "
     "Before you start, take a few slow breaths. Look at a few friendly faces, and remember that the audience "
     "wants you to do well. Practising with small groups builds confidence."),
    ("How can I drink more water during the day?",
     "Keep a refillable bottle on your desk, drink a glass with every meal and set reminders on your phone. "
     "Adding lemon or cucumber can make it more appealing, and water-rich foods like fruit count too."),
    ("My houseplant's leaves are turning yellow. What could be wrong?",
     "The most common cause is overwatering, so let the soil dry out a little between waterings and make sure "
     "the pot drains well. Other causes are too little light or a lack of nutrients; if only the lowest leaves "
     "yellow, it may just be natural ageing."),
    ("How can I stop procrastinating?",
     "Break the task into a very small first step and commit to doing it for just five minutes; starting is "
     "often the hardest part. Remove distractions, set a specific time for the work, and reward yourself when "
     "you finish."),
    ("I want to start saving money. Where should I begin?",
     "Track your spending for a month to see where your money goes. Then set a realistic goal and have a fixed "
     "amount moved into a savings account automatically on payday, so you save before you can spend it."),
    ("How do I deal with a difficult coworker?",
     "Stay calm and professional, and talk to them privately about specific behaviour rather than their "
     "personality. Listen to their side, look for shared goals, and keep notes. If things don't improve, ask "
     "your manager for help."),
    ("What should I check before buying a used car?",
     "Check the service history and mileage, look for rust and uneven tyre wear, and test-drive it on "
     "different kinds of road. Have an independent mechanic inspect it, and make sure it has no outstanding "
     "finance or hidden accident history."),
    ("How can I be more productive when working from home?",
     "Keep regular hours and a dedicated workspace, and plan your top three tasks each morning. Take real "
     "breaks away from the screen, and close chat apps when you need to concentrate."),
    ("Any tips for surviving a long flight?",
     "Drink plenty of water and go easy on alcohol. Walk and stretch every hour or two, wear comfortable "
     "layers, and bring earplugs and an eye mask. Try to sleep according to your destination's time zone."),
    ("How do I make friends after moving to a new city?",
     "Join groups built around something you enjoy, such as a sports club, a choir or a volunteering project, "
     "and go regularly, since seeing the same faces builds friendships. Say yes to invitations and follow up "
     "with people you click with."),
    ("How can I cut down my screen time?",
     "Turn off non-essential notifications, move distracting apps off your home screen and set daily limits "
     "in your phone's settings. Keep the phone out of the bedroom, and replace scrolling with something "
     "specific, like reading or a walk."),
    ("What's a good trick for remembering people's names?",
     "Repeat the name when you are introduced (\"Nice to meet you, Priya\"), use it once more during the "
     "conversation, and link it to something memorable about the person. Writing it down afterwards helps it "
     "stick."),
    ("My friend is going through a hard time. How can I support them?",
     "Reach out and let them know you care, then listen more than you talk. Ask what would help rather than "
     "guessing, offer practical help such as a meal or a lift, and keep checking in over the following weeks."),
    ("How should I ask for a pay rise?",
     "Choose a good moment, such as after a success or at a review. Bring evidence of your results and know "
     "the typical pay for your role. Ask for a specific figure, stay calm and professional, and if the answer "
     "is not yet, ask what would need to happen."),
    ("Is it better to study in the morning or at night?",
     "It depends on when you feel most alert. Many people focus best in the morning, but consistency, enough "
     "sleep and short focused sessions matter more than the clock. Try both for a week and compare how much "
     "you remember."),
    ("How do I keep my kitchen knives sharp?",
     "Hone them often with a honing steel and sharpen them on a whetstone a few times a year. Cut on wooden or "
     "plastic boards rather than glass or stone, and wash them by hand instead of in the dishwasher."),
    ("I've had a headache for a week that won't go away. What should I do?",
     "A headache that lasts a week should be checked by a doctor, who can look for causes such as tension, "
     "eye strain or overuse of painkillers. Get urgent help if it is sudden and severe or comes with fever, a "
     "stiff neck, confusion, weakness or vision changes."),
    ("How can I get better at chess?",
     "Solve a few tactics puzzles every day, learn basic opening principles (control the centre, develop "
     "pieces, castle early) rather than memorising lines, and review your lost games to find the move where "
     "things went wrong."),
]

EVERYDAY = [
    ("How much sleep do teenagers need?",
     "Most teenagers need about 8 to 10 hours of sleep a night. Their body clocks shift later during "
     "adolescence, which is why many teens find it hard to fall asleep early.",
     "Teenagers only need about 4 hours of sleep a night."),
    ("Why do onions make you cry?",
     "Cutting an onion breaks its cells and releases compounds that form an irritating gas. When the gas "
     "reaches your eyes, they make tears to wash it away. Chilling the onion and using a sharp knife helps."),
    ("How many strings does a standard guitar have?",
     "A standard guitar has six strings, usually tuned E, A, D, G, B, E from lowest to highest.",
     "A standard guitar has four strings."),
    ("What is the main ingredient in guacamole?",
     "Avocado is the main ingredient. It is mashed with lime juice and salt, and often onion, tomato, "
     "coriander and chilli.",
     "The main ingredient in guacamole is chickpeas."),
    ("Why shouldn't you put water on a grease fire?",
     "Water sinks under the burning oil and instantly turns to steam, throwing burning oil into the air and "
     "spreading the fire. Turn off the heat and cover the pan with a lid, or use a fire extinguisher made for "
     "kitchen fires.",
     "You should throw water on it quickly, because water puts out any kind of fire."),
    ("How long should I boil dried pasta?",
     "Most dried pasta needs 8 to 12 minutes in plenty of salted, boiling water; check the packet for the "
     "exact time. Taste a piece a minute early: it should be tender but still slightly firm (al dente)."),
    ("Can dogs eat chocolate?",
     "No. Chocolate contains theobromine, which dogs process very slowly, and it can cause vomiting, a racing "
     "heart and seizures. Dark chocolate is the most dangerous. If your dog eats some, call a vet.",
     "Yes, a little chocolate is a healthy treat for dogs."),
    ("What is the difference between a hurricane and a typhoon?",
     "They are the same kind of storm, a tropical cyclone. It is called a hurricane in the Atlantic and "
     "north-east Pacific, and a typhoon in the north-west Pacific."),
    ("How often should I replace my toothbrush?",
     "Every three to four months, or sooner if the bristles are frayed. It is also a good idea to replace it "
     "after you have been ill.",
     "Once every five years is enough."),
    ("What is the largest bone in the human body?",
     "The femur, or thigh bone, is the largest and strongest bone in the human body.",
     "The skull is the largest bone in the human body."),
    ("What is the currency of Japan?",
     "The currency of Japan is the yen, written ¥ and abbreviated JPY.",
     "The currency of Japan is the yuan."),
    ("Which vitamin does your body make from sunlight?",
     "Vitamin D. Your skin makes it when exposed to ultraviolet B light, and your body needs it to absorb "
     "calcium for healthy bones.",
     "Vitamin C is made by the skin in sunlight."),
    ("What is the freezing point of water in kelvin?",
     "Water freezes at 273.15 kelvin, which is 0 °C at standard atmospheric pressure.",
     "Water freezes at 0 kelvin."),
    ("How many sides does a pentagon have?",
     "A pentagon has five sides and five angles. In a regular pentagon each interior angle is 108 degrees.",
     "A pentagon has six sides."),
    ("What do the angles in a triangle add up to?",
     "The interior angles of a triangle always add up to 180 degrees (on a flat surface).",
     "The angles in a triangle add up to 360 degrees."),
    ("How does a refrigerator keep food cold?",
     "A fridge pumps a refrigerant through pipes. Inside, the refrigerant evaporates and absorbs heat from the "
     "food compartment; a compressor then squeezes it, and it gives off that heat through coils at the back. "
     "Heat is carried out, so the inside stays cold."),
    ("Explain the stock market in two sentences.",
     "The stock market is where people buy and sell shares, which are small pieces of ownership in companies. "
     "Share prices rise and fall with demand, reflecting what investors expect of each company."),
    ("Explain the offside rule in football simply.",
     "A player is offside if, when a teammate passes the ball to them, they are in the opponents' half and "
     "nearer the goal line than both the ball and the second-last defender. Being level is fine, and there is "
     "no offside from a throw-in, goal kick or corner."),
    ("Explain blockchain to a beginner.",
     "A blockchain is a shared record of transactions kept by many computers at once. New entries are grouped "
     "into blocks, and each block is linked to the previous one by a cryptographic fingerprint, so tampering "
     "with old records would be obvious. Bitcoin uses one to track who owns which coins."),
    ("What does a red traffic light mean?",
     "A red light means stop: wait behind the stop line until the light turns green. Some places allow a turn "
     "on red after a full stop, but only where the rules or signs say so.",
     "A red light means speed up so you get through before it changes."),
    ("Why do cats knead with their paws?",
     "Kneading is a habit from kittenhood, when kittens press their mother's belly to help the milk flow. "
     "Adult cats often do it when they feel content and safe, and it may also mark a spot with scent from "
     "their paws."),
    ("What's the difference between a crocodile and an alligator?",
     "Alligators have a wide, U-shaped snout, and when their mouth is shut the lower teeth are mostly hidden. "
     "Crocodiles have a narrower, V-shaped snout with lower teeth visible. Alligators live mainly in the "
     "United States and China, crocodiles across the tropics."),
]

# Justified refusals and safety-minded answers: only used as SFT demonstrations, never in pairs or rankings.
SAFETY = [
    ("Write a mean message I can send to bully a classmate.",
     "I won't help write a message meant to hurt someone. If this classmate has upset you, I'm happy to help "
     "you put what's bothering you into calm words, or think through how to raise it with them or a teacher."),
    ("What household chemicals can I mix to make a toxic gas?",
     "I can't help with making toxic gases. For your safety, though: never mix bleach with ammonia or with "
     "acids such as vinegar or some toilet cleaners, because those combinations release dangerous gases. "
     "Store cleaning products separately and keep rooms ventilated when cleaning."),
    ("How can I get into my sister's phone without her knowing?",
     "I can't help with getting into someone else's phone without their permission; it would invade her "
     "privacy and may be illegal. If you are worried about her, try talking to her directly or ask a parent "
     "or another trusted adult for help."),
    ("I found a wallet on the street. Can I keep the money?",
     "You should try to return it. Look for an ID card and contact the owner, or hand it in to the police or "
     "the nearest shop. In many countries keeping found property is treated as theft, and returning it could "
     "save someone a lot of stress."),
]

# Multi-turn conversations (user, assistant, user, assistant, ...), hand-written.
DIALOGUES = [
    ["What's the capital of Spain?",
     "The capital of Spain is Madrid, which is also the country's largest city.",
     "How far is it from Barcelona?",
     "Madrid and Barcelona are about 500 kilometres apart in a straight line and a little over 600 km by road. "
     "The high-speed train takes roughly two and a half to three hours."],
    ["Can you recommend a book for a long train ride?",
     "Happy to! Do you prefer fiction or non-fiction?",
     "Fiction, something light.",
     "Try The Hitchhiker's Guide to the Galaxy by Douglas Adams. It is funny, fast-paced and easy to pick up "
     "and put down, which suits a train journey."],
    ["What's 25 times 4?",
     "25 × 4 = 100.",
     "Now divide that by 8.",
     "100 ÷ 8 = 12.5, or 12 with a remainder of 4 if you need whole numbers."],
    ["Write a haiku about coffee.",
     "Dark roast, first sip, bliss,\nthe whole kitchen smells of dawn,\nmy eyes open now.",
     "Make it funnier.",
     "Fresh coffee, poured hot,\nset down somewhere safe to cool,\nfound cold at lunchtime."],
    ["I want to get fit. Where do I start?",
     "A good start is three short workouts a week: 20 to 30 minutes of brisk walking or cycling, plus some "
     "squats and push-ups. How active are you at the moment?",
     "Not very. I sit at a desk all day.",
     "Then begin gently: a 15-minute walk every day, and stand up to stretch once an hour at work. After two "
     "weeks, add two short sessions of squats, wall push-ups and lunges. Build up slowly so it becomes a habit "
     "rather than a strain."],
    ["What does 'bonjour' mean?",
     "\"Bonjour\" is French for \"hello\" or \"good day\". It is the standard polite greeting during the day.",
     "And in the evening?",
     "In the evening, French speakers usually say \"bonsoir\", which means \"good evening\"."],
    ["How do I make a list in Python?",
     "Use square brackets: fruits = [\"apple\", \"banana\", \"cherry\"]. An empty list is just [].",
     "How do I add things to it?",
     "Use append to add one item at the end: fruits.append(\"date\"). Use extend to add several at once, "
     "fruits.extend([\"fig\", \"grape\"]), or insert to put an item at a position, fruits.insert(0, \"apricot\")."],
    ["Is Pluto a planet?",
     "Since 2006 Pluto has been classified as a dwarf planet rather than a planet, because it has not cleared "
     "its orbit of other objects.",
     "Are there other dwarf planets?",
     "Yes. The International Astronomical Union recognises five: Pluto, Eris, Ceres, Haumea and Makemake. "
     "Ceres is in the asteroid belt; the others orbit beyond Neptune."],
    ["Help me write an email subject line for a job application.",
     "Sure. What is the job title?",
     "Junior graphic designer.",
     "Try: \"Application for Junior Graphic Designer – [Your Name]\". It states the role and your name, so it "
     "is easy for the recruiter to find and file."],
    ["What's a healthy dinner I can cook in 20 minutes?",
     "A vegetable stir-fry: fry sliced peppers, broccoli and carrots with garlic and ginger, add soy sauce and "
     "a protein such as tofu, chicken or egg, and serve with rice or noodles.",
     "I don't have a wok.",
     "No problem: any large frying pan works. Use high heat, don't overcrowd the pan, and cook the vegetables "
     "in two batches if needed so they fry instead of steaming."],
    ["Convert 5 miles to kilometres.",
     "5 miles is about 8.05 kilometres, since one mile is about 1.609 km.",
     "And 10 km to miles?",
     "10 kilometres is about 6.21 miles (10 ÷ 1.609)."],
    ["Who painted The Starry Night?",
     "Vincent van Gogh painted The Starry Night in 1889, while staying at an asylum in Saint-Rémy-de-Provence "
     "in southern France.",
     "Where can I see it?",
     "It hangs in the Museum of Modern Art (MoMA) in New York City, which has owned it since 1941."],
    ["I'm feeling really unmotivated today.",
     "That happens to everyone. Is there something specific you need to get done?",
     "Yes, a report for work.",
     "Start with the easiest part, like writing the headings or a rough list of points, and give it just ten "
     "minutes. Once something is on the page, it is much easier to keep going. A short walk first can help "
     "too."],
    ["What is the square root of 64?",
     "The square root of 64 is 8, because 8 × 8 = 64.",
     "And the cube root?",
     "The cube root of 64 is 4, because 4 × 4 × 4 = 64."],
    ["Fix the grammar: 'He don't know nothing about it.'",
     "He doesn't know anything about it.",
     "Why not 'nothing'?",
     "\"Doesn't\" and \"nothing\" together make a double negative, which standard English avoids. Use either "
     "\"He doesn't know anything about it\" or \"He knows nothing about it\"."],
    ["Tell me a fun fact about space.",
     "A day on Venus is longer than its year: Venus takes about 243 Earth days to spin once, but only about "
     "225 days to orbit the Sun.",
     "Wow. Another one?",
     "Neutron stars are so dense that a teaspoon of their material would weigh around a billion tonnes on "
     "Earth."],
    ["What's the difference between 'your' and 'you're'?",
     "\"Your\" shows possession (your bag), while \"you're\" is short for \"you are\" (you're late).",
     "Can you give me a sentence with both?",
     "Sure: \"You're going to love your new bike.\" A quick test: if \"you are\" fits, write \"you're\"."],
    ["Suggest a name for my new puppy.",
     "How about Biscuit? It's cheerful and easy to call out at the park.",
     "She's black and white.",
     "Then try Domino, Oreo or Pepper. All three suit a black and white coat and are short enough for a puppy "
     "to learn quickly."],
    ["How long should I cook a soft-boiled egg?",
     "About six minutes in gently boiling water, starting with an egg straight from the fridge, gives a set "
     "white and a runny yolk.",
     "And hard-boiled?",
     "About ten to eleven minutes. Then cool it in cold water straight away to stop the cooking and make it "
     "easier to peel."],
    ["What is 18% of 250?",
     "18% of 250 is 0.18 × 250 = 45.",
     "What about 18% of 75?",
     "18% of 75 is 0.18 × 75 = 13.5."],
    ["Who was Ada Lovelace?",
     "Ada Lovelace was an English mathematician of the 1800s who wrote about Charles Babbage's planned "
     "Analytical Engine. She is often called the first computer programmer.",
     "Why is she called that?",
     "In her notes of 1843 she set out step by step how the engine could calculate Bernoulli numbers, widely "
     "seen as the first published computer program. She also saw that such machines could work with more than "
     "numbers, such as music."],
    ["Summarise the story of Cinderella in one sentence.",
     "A kind young woman mistreated by her stepfamily goes to a royal ball with her fairy godmother's help, "
     "wins the prince's heart, and is found again through the glass slipper she leaves behind.",
     "Now in five words.",
     "Kind girl's slipper wins prince."],
    ["My laptop has become really slow.",
     "Let's narrow it down. Is it slow all the time or only with certain programs, and how full is the disk?",
     "All the time, and the disk is almost full.",
     "A nearly full disk is a likely cause. Delete large files you don't need, empty the recycle bin, "
     "uninstall unused programs, and move photos or videos to an external drive or cloud storage. Aim for at "
     "least 15 to 20 percent free space, then restart the laptop."],
    ["What's the tallest building in the world?",
     "The Burj Khalifa in Dubai is the tallest building in the world, at 828 metres.",
     "When was it finished?",
     "It was completed in 2009 and officially opened in January 2010."],
    ["Give me a word that means 'very tired'.",
     "\"Exhausted\" means very tired.",
     "Something more informal?",
     "\"Wiped out\", \"beat\" or, in British English, \"knackered\" all work in casual speech, as in \"I'm "
     "totally wiped out after that hike.\""],
    ["Write a one-line motivational quote.",
     "\"Small steps every day add up to big changes.\"",
     "Make it about learning.",
     "\"Every expert was once a beginner who kept going.\""],
    ["How many ounces are in a pound?",
     "There are 16 ounces in a pound.",
     "How many grams is that?",
     "One pound is about 454 grams, so one ounce is about 28.35 grams."],
    ["What is a synonym for 'begin'?",
     "\"Start\" is the most common synonym for begin. Others are \"commence\" and \"launch\".",
     "Use 'commence' in a sentence.",
     "\"The ceremony will commence at ten o'clock sharp.\""],
    ["I need a gift idea for my dad.",
     "What does he enjoy doing in his free time?",
     "He loves gardening.",
     "A pair of good leather gardening gloves, quality pruning shears or a set of unusual seeds, such as "
     "heirloom tomatoes, would suit him. For an experience, a day out together at a famous garden could be "
     "memorable."],
    ["What causes a solar eclipse?",
     "A solar eclipse happens when the Moon passes between the Sun and Earth and blocks the Sun's light, "
     "casting a shadow on part of Earth.",
     "Why doesn't that happen every month?",
     "The Moon's orbit is tilted by about 5 degrees compared with Earth's orbit around the Sun, so most months "
     "the Moon passes slightly above or below the line between them. An eclipse only happens when a new moon "
     "falls near a point where the two orbits cross."],
    ["How do I say 'where is the train station' in Spanish?",
     "\"¿Dónde está la estación de tren?\"",
     "And 'thank you very much'?",
     "\"Muchas gracias.\" For even more emphasis you can say \"muchísimas gracias\"."],
    ["Write a Python function that adds two numbers.",
     "```python\ndef add(a, b):\n    return a + b\n```",
     "Can you add type hints?",
     "```python\ndef add(a: float, b: float) -> float:\n    return a + b\n```\nType hints document what the "
     "function expects, but Python does not enforce them when the code runs."],
    ["What's the boiling point of water in Fahrenheit?",
     "At sea level, water boils at 212 °F.",
     "And in Celsius?",
     "That is 100 °C. The Celsius scale was built around water freezing at 0 and boiling at 100 at sea-level "
     "pressure."],
    ["I want to learn the guitar.",
     "Great choice! Do you already have a guitar, and is it acoustic or electric?",
     "I have an acoustic one.",
     "Start with a few open chords such as G, C, D and E minor; together they cover many popular songs. "
     "Practise 15 minutes a day, change between chords slowly, and expect sore fingertips for the first couple "
     "of weeks."],
    ["Name a famous female scientist.",
     "Marie Curie, who won Nobel Prizes in both physics and chemistry for her work on radioactivity.",
     "Someone else?",
     "Rosalind Franklin: her X-ray images of DNA were key to discovering its double-helix structure in 1953."],
    ["Can you check my sentence? 'Everyone have their own opinion.'",
     "It should be \"Everyone has their own opinion.\" \"Everyone\" takes a singular verb.",
     "But isn't 'their' plural?",
     "Here \"their\" is used as a singular, gender-neutral pronoun, which is widely accepted in modern English. "
     "The verb still agrees with \"everyone\", so it is \"has\"."],
    ["What's the weather usually like in Iceland in summer?",
     "Cool and changeable: summer days are usually around 10 to 15 °C, with wind and showers, and it stays "
     "light almost all night in June.",
     "What should I pack?",
     "Layers: a waterproof, windproof jacket, a warm fleece or wool jumper, walking shoes or boots, a hat and "
     "gloves, plus a swimsuit for the hot pools. An eye mask helps you sleep during the bright nights."],
    ["Roll a die for me.",
     "I can't roll a real die, but here is a random-style pick: 4.",
     "What are the odds of rolling a 6 twice in a row?",
     "Each roll has a 1 in 6 chance of a 6, and the rolls are independent, so the chance of two in a row is "
     "1/6 × 1/6 = 1/36, about 2.8%."],
]

CATEGORIES = {
    "science": SCIENCE, "geography": GEOGRAPHY, "history": HISTORY, "howto": HOWTO, "writing": WRITING,
    "rewrite": REWRITE, "math": MATH, "python": PYTHON, "classify": CLASSIFY, "lists": LISTS,
    "define": DEFINE, "advice": ADVICE, "everyday": EVERYDAY, "safety": SAFETY,
}
# Categories whose first sentence is already a correct (if terse) answer, usable as a "second best" response.
TERSE_OK = {"science", "geography", "history", "howto", "classify", "lists", "define", "advice", "everyday"}


class Item:
    def __init__(self, category, prompt, answer, wrong=None, generated=False):
        self.category, self.prompt, self.answer, self.wrong, self.generated = (
            category, prompt, answer, wrong, generated)


# ---------------------------------------------------------------------------------------------------------
# Generated items: arithmetic, word problems and unit conversions, every answer computed here.
# ---------------------------------------------------------------------------------------------------------

def num(x, places=2):
    """A number for text: thousands separators, at most `places` decimals, no trailing zeros."""
    s = f"{x:,.{places}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def money(cents):
    return f"${cents // 100}.{cents % 100:02d}"


def generated_items(rng):
    items = []

    def add(prompt, answer, wrong):
        assert wrong != answer
        items.append(Item("gen-math", prompt, answer, wrong, generated=True))

    for _ in range(4):  # addition with place-value working
        a, b = rng.randint(125, 899), rng.randint(125, 899)
        ha, ta, oa = a // 100 * 100, a // 10 % 10 * 10, a % 10
        hb, tb, ob = b // 100 * 100, b // 10 % 10 * 10, b % 10
        q = rng.choice(["What is {a} + {b}?", "Add {a} and {b}.", "Calculate {a} plus {b}.",
                        "What do you get if you add {a} and {b}?"]).format(a=a, b=b)
        add(q, f"{a} + {b} = {a + b:,}. Add the hundreds ({ha} + {hb} = {ha + hb:,}), the tens ({ta} + {tb} = "
               f"{ta + tb}) and the ones ({oa} + {ob} = {oa + ob}), then combine them: {ha + hb:,} + {ta + tb} + "
               f"{oa + ob} = {a + b:,}.",
            f"{a} + {b} = {a + b - 10:,}.")
    for _ in range(4):  # subtraction in two steps
        a = rng.randint(400, 999)
        b = rng.randint(120, a - 50)
        hb, rb = b // 100 * 100, b % 100
        q = rng.choice(["What is {a} - {b}?", "Subtract {b} from {a}.", "What's {a} minus {b}?",
                        "Work out {a} take away {b}."]).format(a=a, b=b)
        add(q, f"{a} - {b} = {a - b}. In two steps: {a} - {hb} = {a - hb}, then {a - hb} - {rb} = {a - b}. "
               f"Check: {a - b} + {b} = {a}.",
            f"{a} - {b} = {a - b + 10}.")
    for _ in range(5):  # two-digit multiplication
        a, b = rng.randint(12, 49), rng.randint(13, 39)
        bt, bo = b // 10 * 10, b % 10
        q = rng.choice(["What is {a} × {b}?", "Multiply {a} by {b}.", "What's {a} times {b}?",
                        "Calculate {a} * {b}."]).format(a=a, b=b)
        working = f"{a} × {bt} + {a} × {bo} = {a * bt} + {a * bo}" if bo else f"{a} × {bt}"
        add(q, f"{a} × {b} = {a * b}. Split {b} into {bt} + {bo}: {working} = {a * b}." if bo else
               f"{a} × {b} = {a * b}, since {a} × {b // 10} = {a * (b // 10)} and multiplying by 10 adds a zero.",
            f"{a} × {b} = {a * b + rng.choice([-10, 10, a])}.")
    for _ in range(5):  # percentages
        p = rng.choice([5, 10, 15, 20, 25, 30, 40, 60, 75])
        n = rng.randrange(40, 820, 20)
        v = p * n / 100
        q = rng.choice(["What is {p}% of {n}?", "Find {p} percent of {n}.", "Calculate {p}% of {n}.",
                        "How much is {p}% of {n}?"]).format(p=p, n=n)
        add(q, f"{p}% of {n} = {p}/100 × {n} = {num(v)}. A quick check: 10% of {n} is {num(n / 10)}, and "
               f"{p}% is {num(p / 10)} times that.",
            f"{p}% of {n} is {num(v * 10)}.")
    things = [("notebooks", 275), ("coffees", 340), ("bus tickets", 180), ("sandwiches", 425), ("pens", 125)]
    for thing, price in rng.sample(things, 3):  # change from a note
        k = rng.randint(2, 5)
        total = k * price
        note = next(n for n in (500, 1000, 2000, 5000) if n >= total + 1)
        add(f"I buy {k} {thing} at {money(price)} each and pay with a {money(note)[:-3]} note. How much change "
            f"should I get?",
            f"The total is {k} × {money(price)} = {money(total)}. Your change is {money(note)} - {money(total)} = "
            f"{money(note - total)}.",
            f"Your change is {money(note - total + 100)}.")
    for _ in range(3):  # distance = speed × time
        who, question, speeds = rng.choice([
            ("A cyclist rides", "How far does she go?", [12, 15, 18, 24]),
            ("A car drives", "How far does it go?", [45, 60, 80, 90]),
            ("A train travels", "How far does it go?", [80, 120, 150]),
            ("A runner jogs", "How far do they go?", [8, 10, 12])])
        v = rng.choice(speeds)
        h = rng.choice([1.5, 2.5, 3, 4])
        add(f"{who} at {v} km/h for {num(h)} hours. {question}",
            f"Distance = speed × time = {v} × {num(h)} = {num(v * h)} km.",
            f"Distance = {v} ÷ {num(h)} = {num(v / h)} km.")
    for _ in range(2):  # time = distance ÷ speed
        v = rng.choice([40, 50, 60, 80, 100])
        t = rng.choice([1.5, 2.5, 3, 3.5])
        d = int(v * t)
        hours, minutes = int(t), int(round((t - int(t)) * 60))
        as_text = f"{hours} hours" + (f" {minutes} minutes" if minutes else "")
        add(f"How long does it take to drive {d} km at an average speed of {v} km/h?",
            f"Time = distance ÷ speed = {d} ÷ {v} = {num(t)} hours, which is {as_text}.",
            f"Time = {d} × {v} = {d * v:,} hours.")
    for _ in range(3):  # sharing with remainder
        k = rng.randint(3, 8)
        n = k * rng.randint(4, 12) + rng.randint(0, k - 1)
        thing = rng.choice(["sweets", "stickers", "marbles", "cards"])
        each, left = divmod(n, k)
        add(f"{n} {thing} are shared equally among {k} children. How many does each child get, and how many are "
            f"left over?",
            f"{n} ÷ {k} = {each} remainder {left}, so each child gets {each} {thing}" +
            (f" and {left} {'is' if left == 1 else 'are'} left over." if left else " with none left over.") +
            f" Check: {k} × {each} + {left} = {n}.",
            f"Each child gets {each + 1} {thing}.")
    for _ in range(2):  # ages
        a, d, y = rng.randint(6, 14), rng.randint(2, 9), rng.randint(3, 10)
        name = rng.choice(["Maya", "Omar", "Lena", "Jack"])
        add(f"{name} is {a} years old, and {name}'s brother is {d} years older. How old will the brother be in {y} "
            f"years?",
            f"The brother is {a} + {d} = {a + d} now, so in {y} years he will be {a + d} + {y} = {a + d + y}.",
            f"The brother will be {a + y} in {y} years.")
    for _ in range(2):  # rectangle area and perimeter
        l, w = rng.randint(6, 20), rng.randint(3, 12)
        add(f"A garden is {l} m long and {w} m wide. What are its area and perimeter?",
            f"Area = length × width = {l} × {w} = {l * w} square metres. Perimeter = 2 × ({l} + {w}) = "
            f"{2 * (l + w)} metres.",
            f"Area = {2 * (l + w)} square metres and perimeter = {l * w} metres.")
    for _ in range(2):  # wages
        r, h, wk = rng.choice([12, 14, 15, 18, 20]), rng.choice([15, 20, 25, 30]), rng.randint(2, 6)
        name = rng.choice(["Sam", "Priya", "Tom", "Aisha"])
        add(f"{name} earns ${r} an hour and works {h} hours a week. How much is that in {wk} weeks?",
            f"Per week: {r} × {h} = ${r * h:,}. Over {wk} weeks: {r * h} × {wk} = ${r * h * wk:,}.",
            f"{name} earns ${r * h + wk:,}.")

    def conv(prompt, answer, wrong):
        assert wrong != answer
        items.append(Item("gen-convert", prompt, answer, wrong, generated=True))

    for k in rng.sample([5, 8, 12, 21, 42, 50, 100], 2):
        conv(rng.choice(["How many miles is {k} km?", "Convert {k} kilometres to miles."]).format(k=k),
             f"One kilometre is about 0.6214 miles, so {k} km × 0.6214 ≈ {num(k * 0.621371, 1)} miles.",
             f"{k} km is about {num(k * 1.609344, 1)} miles.")
    for m in rng.sample([3, 6, 10, 26, 60], 2):
        conv(rng.choice(["Convert {m} miles to kilometres.", "How many kilometres are in {m} miles?"]).format(m=m),
             f"One mile is about 1.609 km, so {m} miles × 1.609 ≈ {num(m * 1.609344, 1)} km.",
             f"{m} miles is about {num(m * 0.621371, 1)} km.")
    for c in rng.sample([-10, 5, 15, 25, 30, 37, 40], 2):
        f = c * 9 / 5 + 32
        conv(rng.choice(["Convert {c} °C to Fahrenheit.", "What is {c} degrees Celsius in Fahrenheit?"])
             .format(c=c),
             f"Multiply by 9/5 and add 32: {c} × 9/5 + 32 = {num(c * 9 / 5, 1)} + 32 = {num(f, 1)} °F.",
             f"{c} °C is {c + 32} °F.")
    for c in rng.sample([0, 10, 20, 35, 100], 2):
        f = 32 + c * 9 // 5
        conv(rng.choice(["Convert {f} °F to Celsius.", "What is {f} degrees Fahrenheit in Celsius?"]).format(f=f),
             f"Subtract 32 and multiply by 5/9: ({f} - 32) × 5/9 = {f - 32} × 5/9 = {c} °C.",
             f"{f} - 32 = {f - 32}, so it is {f - 32} °C.")
    for kg in rng.sample([3, 5, 12, 20, 68, 75], 2):
        conv(rng.choice(["How many pounds is {kg} kg?", "Convert {kg} kilograms to pounds."]).format(kg=kg),
             f"One kilogram is about 2.205 pounds, so {kg} kg × 2.205 ≈ {num(kg * 2.20462, 1)} lb.",
             f"{kg} kg is about {num(kg / 2.20462, 1)} lb.")
    for lb in rng.sample([2, 10, 150, 180], 1):
        conv(f"Convert {lb} pounds to kilograms.",
             f"One pound is about 0.4536 kg, so {lb} lb × 0.4536 ≈ {num(lb * 0.45359237, 1)} kg.",
             f"{lb} pounds is about {num(lb * 2.20462, 1)} kg.")
    for cm in rng.sample([10, 30, 50, 180], 2):
        conv(rng.choice(["How many inches is {cm} cm?", "Convert {cm} centimetres to inches."]).format(cm=cm),
             f"One inch is exactly 2.54 cm, so {cm} ÷ 2.54 ≈ {num(cm / 2.54, 1)} inches.",
             f"{cm} × 2.54 = {num(cm * 2.54, 1)} inches.")
    for inch in rng.sample([6, 12, 24, 55], 1):
        conv(f"Convert {inch} inches to centimetres.",
             f"One inch is exactly 2.54 cm, so {inch} × 2.54 = {num(inch * 2.54)} cm.",
             f"{inch} inches is {num(inch / 2.54)} cm.")
    for ft in rng.sample([6, 10, 100, 5280], 1):
        conv(f"How many metres are in {ft:,} feet?",
             f"One foot is exactly 0.3048 m, so {ft:,} × 0.3048 ≈ {num(ft * 0.3048)} metres.",
             f"{ft:,} feet is {num(ft * 3.28084)} metres.")
    for l in rng.sample([1.5, 2.25, 0.75, 3.2], 1):
        conv(f"How many millilitres are in {num(l)} litres?",
             f"There are 1,000 millilitres in a litre, so {num(l)} × 1,000 = {num(l * 1000)} ml.",
             f"{num(l)} litres is {num(l * 100)} ml.")
    for h in rng.sample([3, 7, 12, 36], 1):
        conv(f"How many minutes are in {h} hours?",
             f"Each hour has 60 minutes, so {h} × 60 = {h * 60:,} minutes.",
             f"{h} hours is {h * 100:,} minutes.")
    for d in rng.sample([3, 5, 14], 1):
        conv(f"How many hours are there in {d} days?",
             f"Each day has 24 hours, so {d} × 24 = {d * 24} hours.",
             f"{d} days is {d * 12} hours.")
    for g in rng.sample([250, 750, 1500, 2400], 1):
        conv(f"Convert {g:,} grams to kilograms.",
             f"There are 1,000 grams in a kilogram, so {g:,} ÷ 1,000 = {num(g / 1000)} kg.",
             f"{g:,} grams is {num(g / 100)} kg.")
    return items


# ---------------------------------------------------------------------------------------------------------
# Worse responses, of kinds a small reward model can learn to spot.
# ---------------------------------------------------------------------------------------------------------

REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I'm not able to answer questions like this.",
    "Sorry, that's outside what I can help with.",
    "I'd rather not get into that. Please ask something else.",
    "Unfortunately, I cannot provide that information.",
    "As an AI assistant, I'm unable to assist with this request.",
    "I can't do that. Is there anything else I can help you with?",
    "That's not something I'm able to discuss.",
]
VAGUE = [
    "It depends on a lot of things, really.",
    "There are many ways to look at this, and it's hard to say.",
    "That's a good question. There are several factors to consider, and the answer can vary.",
    "Well, it's complicated. You might want to think about it some more.",
    "Some people would say one thing and others would say another.",
    "It could be a few different things. Hard to be sure.",
    "Hmm, it varies. Maybe look into it a bit.",
    "There isn't really a simple answer to that.",
]
RUDE = [
    "Seriously? Look it up yourself.",
    "That's a pretty basic question. You should know this already.",
    "I'm not going to waste my time on that.",
    "Ugh. Figure it out on your own.",
    "Why are you asking me? Use a search engine.",
    "Do your own homework.",
    "Wow, what a pointless question.",
    "Not my problem. Next.",
]


def first_sentence(item):
    """A correct but terse version of the answer (its first sentence), where that makes sense; else None."""
    if item.category not in TERSE_OK or "\n" in item.answer or re.match(r"\d+\.", item.answer):
        return None
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"])", item.answer, maxsplit=1)
    return parts[0] if len(parts) == 2 else None


def truncated(answer):
    """The answer cut off mid-sentence (None for short answers and code)."""
    words = answer.split(" ")
    if "```" in answer or len(words) < 12:
        return None
    first = len(re.split(r"(?<=[.!?])\s+", answer, maxsplit=1)[0].split(" "))
    if first < 6:  # the short first sentence would already hold the answer
        return None
    cut = min(int(len(words) * 0.4), int(first * 0.6))  # stop inside the first sentence: clearly incomplete
    return " ".join(words[: max(3, cut)]).rstrip(",;:.")


def off_topic(item, pool, rng):
    return rng.choice([o for o in pool if o.category != item.category and o.prompt != item.prompt]).answer


def worse(kind, item, pool, rng):
    if kind == "wrong":
        return item.wrong
    if kind == "refusal":
        return rng.choice(REFUSALS)
    if kind == "vague":
        return rng.choice(VAGUE)
    if kind == "rude":
        return rng.choice(RUDE)
    if kind == "off-topic":
        return off_topic(item, pool, rng)
    if kind == "truncated":
        return truncated(item.answer)
    raise ValueError(kind)


def pair_rows(items, pool, rng):
    """One (chosen, rejected) pair per item; about half of the rejections a factual/logical error where one
    was written, the rest cycling through refusal, vague, rude, off-topic and truncated."""
    others = ["refusal", "vague", "rude", "off-topic", "truncated"]
    cycle, rows = [], []
    for item in items:
        if item.wrong and rng.random() < 0.6:
            kind = "wrong"
        else:
            while True:
                if not cycle:
                    cycle = others[:]
                    rng.shuffle(cycle)
                kind = cycle.pop()
                if kind != "truncated" or truncated(item.answer):
                    break
        rows.append({"prompt": item.prompt, "chosen": item.answer, "rejected": worse(kind, item, pool, rng)})
    return rows


def ranked_rows(items, pool, rng):
    """best -> worst: full answer > terse answer (where one exists) > vague or needless refusal >
    wrong (where written) or rude or off-topic."""
    rows = []
    for i, item in enumerate(items):
        ladder = [item.answer]
        terse = first_sentence(item)
        if terse:
            ladder.append(terse)
        ladder.append(rng.choice(VAGUE) if i % 2 == 0 else rng.choice(REFUSALS))
        if item.wrong:
            ladder.append(item.wrong)
        else:
            ladder.append(rng.choice(RUDE) if i % 3 else off_topic(item, pool, rng))
        rows.append({"prompt": item.prompt, "responses": ladder})
    return rows


def chat(turns):
    return {"messages": [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]}


# ---------------------------------------------------------------------------------------------------------
# Splitting and writing
# ---------------------------------------------------------------------------------------------------------

N_EVAL = 40            # single-turn eval items: pairs_eval, prompts_eval (36 of them also in sft_eval)
N_EVAL_DIALOGUES = 4
N_SFT_HELD_OUT = 30    # train items kept out of SFT (seen first in RM/PPO, as in InstructGPT's separate prompt sets)


def stratified_eval(items, n, rng):
    """n items spread over the categories in proportion to their size (largest remainder)."""
    by_cat = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it)
    quota = {c: len(v) * n / len(items) for c, v in by_cat.items()}
    take = {c: int(q) for c, q in quota.items()}
    for c in sorted(quota, key=lambda c: (int(quota[c]) - quota[c], c))[: n - sum(take.values())]:
        take[c] += 1
    chosen = []
    for c in sorted(by_cat):
        chosen += rng.sample(by_cat[c], take[c])
    return chosen


def pick(items, n_with_terse, n_total, rng):
    with_terse = [it for it in items if first_sentence(it)]
    without = [it for it in items if not first_sentence(it)]
    a = rng.sample(with_terse, min(n_with_terse, len(with_terse)))
    b = rng.sample(without, min(n_total - len(a), len(without)))
    out = a + b
    rng.shuffle(out)
    return out


def write(name, rows):
    with open(HERE / name, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def build():
    rng = random.Random(SEED)
    hand = [Item(cat, *t) for cat, group in CATEGORIES.items() if cat != "safety" for t in group]
    safety = [Item("safety", *t) for t in SAFETY]
    gen = generated_items(rng)
    singles = hand + gen
    prompts = [it.prompt for it in singles + safety] + [d[0] for d in DIALOGUES]
    assert len(prompts) == len(set(prompts)), [p for p in prompts if prompts.count(p) > 1]

    eval_items = stratified_eval(singles, N_EVAL, rng)
    eval_ids = {id(it) for it in eval_items}
    train_items = [it for it in singles if id(it) not in eval_ids]
    rng.shuffle(eval_items)
    rng.shuffle(train_items)
    dialogues = DIALOGUES[:]
    rng.shuffle(dialogues)
    eval_dialogues, train_dialogues = dialogues[:N_EVAL_DIALOGUES], dialogues[N_EVAL_DIALOGUES:]

    # SFT: all train items except a held-out few, the justified refusals, and the train dialogues.
    held_out = train_items[:N_SFT_HELD_OUT]
    sft_items = train_items[N_SFT_HELD_OUT:]
    sft_train = [chat([it.prompt, it.answer]) for it in sft_items + safety] + [chat(d) for d in train_dialogues]
    rng.shuffle(sft_train)
    sft_eval = [chat([it.prompt, it.answer]) for it in eval_items[: N_EVAL - N_EVAL_DIALOGUES]]
    sft_eval += [chat(d) for d in eval_dialogues]
    rng.shuffle(sft_eval)

    # Rankings and pairs on different train prompts (more prompts seen by the reward model).
    ranked_train_items = pick(train_items, 60, 80, rng)
    ranked_ids = {id(it) for it in ranked_train_items}
    pair_candidates = [it for it in train_items if id(it) not in ranked_ids]
    pairs_train_items = rng.sample(pair_candidates, min(200, len(pair_candidates)))
    ranked_eval_items = pick(eval_items, 15, 20, rng)

    # PPO prompts: the SFT-held-out prompts first, then others.
    rest = [it for it in train_items[N_SFT_HELD_OUT:]]
    prompt_items = held_out + rng.sample(rest, 200 - len(held_out))
    rng.shuffle(prompt_items)

    files = {
        "sft_train.jsonl": sft_train,
        "sft_eval.jsonl": sft_eval,
        "pairs_train.jsonl": pair_rows(pairs_train_items, singles, rng),
        "pairs_eval.jsonl": pair_rows(eval_items, singles, rng),
        "ranked_train.jsonl": ranked_rows(ranked_train_items, singles, rng),
        "ranked_eval.jsonl": ranked_rows(ranked_eval_items, singles, rng),
        "prompts_train.jsonl": [{"prompt": it.prompt} for it in prompt_items],
        "prompts_eval.jsonl": [{"prompt": it.prompt} for it in eval_items],
    }
    for name, rows in files.items():
        write(name, rows)
    hand_in_sft_train = sum(1 for it in sft_items if not it.generated) + len(safety) + len(train_dialogues)
    return files, hand_in_sft_train


# ---------------------------------------------------------------------------------------------------------
# Verification: re-read every file and check format, uniqueness, train/eval separation and lengths.
# ---------------------------------------------------------------------------------------------------------

def words(text):
    return len(text.split())


def check():
    def load(name):
        rows = []
        with open(HERE / name, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                row = json.loads(line)
                assert isinstance(row, dict), (name, n)
                rows.append(row)
        assert (HERE / name).stat().st_size < 1_000_000, name
        return rows

    def text(value, where):
        assert isinstance(value, str) and value.strip(), where
        return value

    prompts = {}
    for kind in ("sft", "pairs", "ranked", "prompts"):
        for split in ("train", "eval"):
            name = f"{kind}_{split}.jsonl"
            seen = []
            for n, row in enumerate(load(name), 1):
                where = (name, n)
                if kind == "sft":
                    msgs = row["messages"]
                    assert isinstance(msgs, list) and len(msgs) % 2 == 0 and len(msgs) >= 2, where
                    for i, m in enumerate(msgs):
                        assert m["role"] == ("user" if i % 2 == 0 else "assistant"), where
                        text(m["content"], where)
                        if m["role"] == "assistant":
                            assert words(m["content"]) <= 120, where
                    seen.append(msgs[0]["content"])
                elif kind == "pairs":
                    text(row["prompt"], where), text(row["chosen"], where), text(row["rejected"], where)
                    assert row["chosen"] != row["rejected"], where
                    assert words(row["chosen"]) < 80 and words(row["rejected"]) < 80, where
                    seen.append(row["prompt"])
                elif kind == "ranked":
                    text(row["prompt"], where)
                    rs = row["responses"]
                    assert isinstance(rs, list) and 3 <= len(rs) <= 4, where
                    for r in rs:
                        text(r, where)
                        assert words(r) < 80, where
                    assert len(set(rs)) == len(rs), where
                    seen.append(row["prompt"])
                else:
                    text(row["prompt"], where)
                    seen.append(row["prompt"])
            assert len(seen) == len(set(seen)), f"duplicate prompt in {name}"
            prompts[name] = seen
        train, evl = set(prompts[f"{kind}_train.jsonl"]), set(prompts[f"{kind}_eval.jsonl"])
        assert not train & evl, f"{kind}: eval prompts also in train"
    all_train = set().union(*(set(v) for k, v in prompts.items() if "_train" in k))
    all_eval = set().union(*(set(v) for k, v in prompts.items() if "_eval" in k))
    assert not all_train & all_eval, "an eval prompt appears in some train file"
    return {k: len(v) for k, v in prompts.items()}


def main():
    files, hand_in_sft_train = build()
    counts = check()
    assert hand_in_sft_train >= 200, hand_in_sft_train
    multi = sum(len(r["messages"]) > 2 for r in files["sft_train.jsonl"])
    for name, n in counts.items():
        print(f"{name}: {n} rows")
    print(f"sft_train: {multi} multi-turn, {hand_in_sft_train} hand-written rows")


if __name__ == "__main__":
    main()
