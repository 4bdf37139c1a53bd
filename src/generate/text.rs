//! The words of a generated catalog: product names, lorem-ipsum slogans and
//! descriptions, style colors and product features, with the vocabulary and the
//! proportions of the original dataset (itself made with a faker library).

use super::rng::Rand;

/// Categories of generated products; a product's name ends with its category.
#[rustfmt::skip]
pub(super) const CATEGORIES: &[&str] = &[
    "Pants", "Sweatpants", "Suit", "Shirt", "Tank Top", "Skirt", "Shorts", "Coat",
    "Trousers", "Backpack", "Dress", "Socks", "Romper", "Boots", "Shoes", "Sweater",
    "Sunglasses", "Jacket", "Heels", "Hat", "Cap", "Hoodie", "Slacks",
];

/// Categories sold in shoe sizes (the genuine ones included).
const FOOTWEAR: &[&str] = &[
    "Boots",
    "Shoes",
    "Heels",
    "Kicks",
    "Dress Shoes",
    "Basketball Shoes",
];

/// Whether products of `category` come in shoe sizes.
pub(super) fn is_footwear(category: &str) -> bool {
    FOOTWEAR.contains(&category)
}

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Adaline", "Addison", "Adelbert", "Aditya", "Adolfo", "Adrian", "Adriana", "Agustin",
    "Aimee", "Alanis", "Alexandro", "Alexane", "Ali", "Aliyah", "Aliza", "Alvina", "Amber",
    "Amy", "Anahi", "Andres", "Andrew", "Anibal", "Annamae", "Anne", "Aracely", "Arlo",
    "Armand", "Armani", "Aron", "Arvel", "Avery", "Avis", "Bartholome", "Baylee", "Belle",
    "Bertram", "Beryl", "Bonnie", "Boris", "Brandi", "Brando", "Brent", "Brian",
    "Bridgette", "Bruce", "Burley", "Caesar", "Cale", "Camryn", "Cara", "Carey", "Carlie",
    "Carmel", "Carolina", "Carrie", "Caterina", "Charlotte", "Chauncey", "Chaz",
    "Christiana", "Clair", "Claud", "Clifton", "Clinton", "Concepcion", "Cooper",
    "Cornelius", "Cory", "Cristal", "Daisha", "Dameon", "Danny", "Dariana", "Darryl",
    "Dayne", "Deangelo", "Deanna", "Dee", "Demond", "Dennis", "Deonte", "Desiree",
    "Destinee", "Destiny", "Devonte", "Don", "Donato", "Dorian", "Dorris", "Drake", "Duane",
    "Earnest", "Ebba", "Elaina", "Eldon", "Eldora", "Eleanora", "Eleazar", "Eliezer",
    "Elijah", "Elody", "Eloisa", "Elroy", "Else", "Elta", "Elva", "Emanuel", "Emie",
    "Emile", "Emmitt", "Eric", "Erica", "Erika", "Ernestine", "Esperanza", "Estrella",
    "Ethelyn", "Evangeline", "Eveline", "Fabian", "Florencio", "Flossie", "Franco", "Franz",
    "Freddy", "Frederic", "Fredy", "Garrick", "Gaston", "Geoffrey", "Geovanny", "Geraldine",
    "Gia", "Gilda", "Giovani", "Gordon", "Greyson", "Gust", "Gustave", "Hailee", "Harley",
    "Harmon", "Haskell", "Hassan", "Heber", "Herman", "Hermina", "Hettie", "Hilbert",
    "Hipolito", "Jadon", "Jaeden", "Jaida", "Jaiden", "Jaime", "Jakob", "Jalen", "Jamarcus",
    "Jamie", "Jamison", "Jane", "Jarod", "Jayda", "Jaylin", "Jeanne", "Jennie", "Jerome",
    "Jerrod", "Jillian", "Joanne", "Joesph", "Johnpaul", "Johnson", "Jonathon", "Josiane",
    "Judd", "Justen", "Kade", "Kaleb", "Kamille", "Karen", "Karl", "Kasandra", "Katherine",
    "Kathryn", "Katrina", "Kay", "Kellen", "Kelvin", "Kenton", "Khalid", "King",
    "Kristofer", "Krystina", "Laila", "Lane", "Lavonne", "Leila", "Lenora", "Leo", "Lesly",
    "Lessie", "Letha", "Lindsey", "Logan", "Lottie", "Loyal", "Lucile", "Lucy", "Lupe",
    "Mac", "Maddison", "Madie", "Madisyn", "Magnolia", "Makenna", "Makenzie", "Marcelino",
    "Marcellus", "Marcus", "Margret", "Marilou", "Marjolaine", "Marlen", "Mary", "Mathew",
    "Mathias", "Matilda", "Mavis", "Maximillia", "Maximus", "Mckenna", "Mckenzie",
    "Mercedes", "Mervin", "Michelle", "Milan", "Misael", "Mittie", "Mohammad", "Mose",
    "Moshe", "Muriel", "Myrtice", "Nadia", "Naomie", "Nathan", "Newton", "Nicolette",
    "Niko", "Noble", "Norval", "Oda", "Ofelia", "Oliver", "Omari", "Patsy", "Paula",
    "Pietro", "Priscilla", "Raegan", "Rahsaan", "Raina", "Reagan", "Reed", "Reginald",
    "Richard", "Roman", "Roselyn", "Rowland", "Royal", "Russell", "Ruth", "Ruthe", "Ryan",
    "Sabrina", "Sabryna", "Salma", "Santino", "Shakira", "Shanelle", "Sibyl", "Sienna",
    "Sigurd", "Simone", "Sonny", "Sonya", "Spencer", "Stacey", "Stella", "Stewart",
    "Sydnie", "Tabitha", "Thad", "Thalia", "Trevion", "Trevor", "Triston", "Trycia",
    "Tyler", "Tyrel", "Tyshawn", "Vada", "Valentina", "Vanessa", "Verda", "Verdie", "Vern",
    "Vernice", "Vesta", "Vickie", "Vicky", "Vidal", "Vilma", "Weston", "Wilber", "Wiley",
    "Willie", "Willy", "Winfield", "Xzavier", "Zachary",
];

#[rustfmt::skip]
const LOREM: &[&str] = &[
    "a", "ab", "accusamus", "accusantium", "ad", "adipisci", "alias", "aliquam", "aliquid",
    "amet", "animi", "aperiam", "architecto", "asperiores", "aspernatur", "assumenda", "at",
    "atque", "aut", "autem", "beatae", "blanditiis", "commodi", "consectetur",
    "consequatur", "consequuntur", "corporis", "corrupti", "culpa", "cum", "cumque",
    "cupiditate", "debitis", "delectus", "deleniti", "deserunt", "dicta", "dignissimos",
    "distinctio", "dolor", "dolore", "dolorem", "doloremque", "dolores", "doloribus",
    "dolorum", "ducimus", "ea", "eaque", "earum", "eius", "eligendi", "enim", "eos",
    "error", "esse", "est", "et", "eum", "eveniet", "ex", "excepturi", "exercitationem",
    "expedita", "explicabo", "facere", "facilis", "fuga", "fugiat", "fugit", "harum", "hic",
    "id", "illo", "illum", "impedit", "in", "incidunt", "inventore", "ipsa", "ipsam",
    "ipsum", "iste", "itaque", "iure", "iusto", "labore", "laboriosam", "laborum",
    "laudantium", "libero", "magnam", "magni", "maiores", "maxime", "minima", "minus",
    "modi", "molestiae", "molestias", "mollitia", "nam", "natus", "necessitatibus", "nemo",
    "neque", "nesciunt", "nihil", "nisi", "nobis", "non", "nostrum", "nulla", "numquam",
    "occaecati", "odio", "odit", "officia", "officiis", "omnis", "optio", "pariatur",
    "perferendis", "perspiciatis", "placeat", "porro", "possimus", "praesentium",
    "provident", "quae", "quaerat", "quam", "quas", "quasi", "qui", "quia", "quibusdam",
    "quidem", "quis", "quisquam", "quo", "quod", "quos", "ratione", "recusandae",
    "reiciendis", "rem", "repellat", "repellendus", "reprehenderit", "repudiandae", "rerum",
    "saepe", "sapiente", "sed", "sequi", "similique", "sint", "sit", "soluta", "sunt",
    "suscipit", "tempora", "tempore", "temporibus", "tenetur", "totam", "ullam", "unde",
    "ut", "vel", "velit", "veniam", "veritatis", "vero", "vitae", "voluptas", "voluptate",
    "voluptatem", "voluptates", "voluptatibus", "voluptatum",
];

/// Share of words, per million, drawn from the few that faker's lorem favours.
const COMMON_LOREM_SHARE: u32 = 300_000;

/// The words faker's lorem favours.
#[rustfmt::skip]
const COMMON_LOREM: &[&str] = &[
    "et", "et", "et", "aut", "aut", "qui", "est", "ut", "quia", "voluptatem", "rerum",
    "consequatur", "non", "voluptas", "sed", "sit", "omnis", "quo", "eos", "ea", "quis",
    "molestiae", "dolor",
];

/// Style names: faker's commerce colors, capitalized as in the dataset.
#[rustfmt::skip]
const COLORS: &[&str] = &[
    "Red", "Green", "Blue", "Yellow", "Purple", "Mint green", "Teal", "White", "Black",
    "Orange", "Pink", "Grey", "Maroon", "Violet", "Turquoise", "Tan", "Sky blue", "Salmon",
    "Plum", "Orchid", "Olive", "Magenta", "Lime", "Ivory", "Indigo", "Gold", "Fuchsia",
    "Cyan", "Azure", "Lavender", "Silver",
];

/// Features whose value is `null`, with their relative frequencies.
const BARE_FEATURES: &[(&str, u32)] = &[
    ("Non-GMO", 42),
    ("Lifetime Guarantee", 26),
    ("Green Leaf Certified", 25),
    ("5 Year Warranty", 20),
    ("Satisfaction Guaranteed", 18),
    ("Fair Trade Certified", 15),
    ("Sustainably Sourced", 13),
    ("UV Protection", 1),
];

/// Features with a value, with their relative frequencies and possible values.
const VALUED_FEATURES: &[(&str, u32, &[&str])] = &[
    ("Cut", 40, &["Skinny", "Loose", "Straight", "Striaght"]),
    (
        "Fabric",
        26,
        &[
            "95% Cotton, 5% Elastic",
            "Cashmere",
            "100% Cotton",
            "Wool",
            "Velvet",
            "Canvas",
            "Silk",
            "Cool Fit",
            "99% Cotton 1% Elastic",
            "80% Cotton, 20% Polyester",
        ],
    ),
    (
        "Lens",
        25,
        &[
            "100% UV Protective",
            "Ultrasheen Gold",
            "Ultrasheen Basic",
            "Ultrasheen Silver",
        ],
    ),
    (
        "Material",
        25,
        &[
            "FullControlSkin",
            "FullSupport Hybrid Compound",
            "Rubber Mesh",
            "FullControl Skin",
            "Control Support Bridge",
            "Armor Weave",
        ],
    ),
    ("Stitching", 23, &["Double Stitch", "Cross Stitch"]),
    ("Frame", 21, &["AllLight Composition Resin", "DuraResin"]),
    (
        "Buttons",
        20,
        &["White Resin", "Ivory", "Brass", "Blue Resin", "Black Resin"],
    ),
    ("Sole", 6, &["Rubber", "FullControlSkin"]),
    ("Mid-Sole", 3, &["ControlSupport Arch Bridge"]),
];

/// Share of features, per million, that are bare (value `null`).
const BARE_FEATURE_PER_MILLION: u32 = 460_000;

/// Lengths, in bytes, of the texts of generated products (as in the dataset).
const NAME_LENGTH: std::ops::RangeInclusive<usize> = 9..=24;
const SLOGAN_LENGTH: std::ops::RangeInclusive<usize> = 11..=85;
const DESCRIPTION_LENGTH: std::ops::RangeInclusive<usize> = 55..=381;

/// Share of descriptions, per million, with one double space between sentences.
const DOUBLE_SPACE_PER_MILLION: u32 = 20_000;

/// Appends a product name for `category`: a first name and the category, sometimes
/// with faker's odd "The " before it or " 0"/" 50" after the first name.
pub(super) fn product_name(rng: &mut Rand, category: &str, out: &mut Vec<u8>) {
    fill_within(out, NAME_LENGTH, |out| {
        let form = rng.weighted(&[860, 70, 35, 35]);
        if form == 1 {
            out.extend_from_slice(b"The ");
        }
        out.extend_from_slice(rng.pick(FIRST_NAMES).as_bytes());
        match form {
            2 => out.extend_from_slice(b" 0"),
            3 => out.extend_from_slice(b" 50"),
            _ => {}
        }
        out.push(b' ');
        out.extend_from_slice(category.as_bytes());
    });
}

/// Appends a slogan: one lorem-ipsum sentence.
pub(super) fn slogan(rng: &mut Rand, out: &mut Vec<u8>) {
    fill_within(out, SLOGAN_LENGTH, |out| sentence(rng, out));
}

/// Appends a description: three to six lorem-ipsum sentences.
pub(super) fn description(rng: &mut Rand, out: &mut Vec<u8>) {
    fill_within(out, DESCRIPTION_LENGTH, |out| {
        let sentences = rng.range(3, 6);
        let double_space = rng
            .chance(DOUBLE_SPACE_PER_MILLION)
            .then(|| rng.range(1, sentences - 1));
        for index in 0..sentences {
            if index > 0 {
                out.push(b' ');
                if double_space == Some(index) {
                    out.push(b' ');
                }
            }
            sentence(rng, out);
        }
    });
}

/// A style name.
pub(super) fn color(rng: &mut Rand) -> &'static str {
    COLORS[rng.below(COLORS.len() as u32) as usize]
}

/// A feature name and its value (`None` for `null`).
pub(super) fn feature(rng: &mut Rand) -> (&'static str, Option<&'static str>) {
    if rng.chance(BARE_FEATURE_PER_MILLION) {
        (
            rng.pick_weighted(BARE_FEATURES, |&(_, weight)| weight).0,
            None,
        )
    } else {
        let &(name, _, values) = rng.pick_weighted(VALUED_FEATURES, |&(_, weight, _)| weight);
        (name, Some(*rng.pick(values)))
    }
}

/// One sentence of three to ten words, capitalized, ending with a full stop.
fn sentence(rng: &mut Rand, out: &mut Vec<u8>) {
    let words = rng.range(3, 10);
    for index in 0..words {
        let word = if rng.chance(COMMON_LOREM_SHARE) {
            rng.pick(COMMON_LOREM)
        } else {
            rng.pick(LOREM)
        };
        if index == 0 {
            out.push(word.as_bytes()[0].to_ascii_uppercase());
            out.extend_from_slice(&word.as_bytes()[1..]);
        } else {
            out.push(b' ');
            out.extend_from_slice(word.as_bytes());
        }
    }
    out.push(b'.');
}

/// Appends what `write` makes, making it again until its length falls in `length`.
fn fill_within(
    out: &mut Vec<u8>,
    length: std::ops::RangeInclusive<usize>,
    mut write: impl FnMut(&mut Vec<u8>),
) {
    let start = out.len();
    loop {
        write(out);
        if length.contains(&(out.len() - start)) {
            return;
        }
        out.truncate(start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::rng::Stream;

    #[test]
    fn texts_keep_the_dataset_lengths() {
        let mut rng = Rand::new(3, 0, Stream::Product);
        for _ in 0..500 {
            let category = *rng.pick(CATEGORIES);
            let mut name = Vec::new();
            product_name(&mut rng, category, &mut name);
            assert!(NAME_LENGTH.contains(&name.len()));
            assert!(name.ends_with(category.as_bytes()));
            let mut text = Vec::new();
            slogan(&mut rng, &mut text);
            assert!(SLOGAN_LENGTH.contains(&text.len()) && text.ends_with(b"."));
            text.clear();
            description(&mut rng, &mut text);
            assert!(DESCRIPTION_LENGTH.contains(&text.len()));
            assert!(text[0].is_ascii_uppercase());
        }
    }

    #[test]
    fn features_are_null_about_as_often_as_in_the_dataset() {
        let mut rng = Rand::new(3, 0, Stream::Features);
        let bare = (0..10_000)
            .filter(|_| feature(&mut rng).1.is_none())
            .count();
        assert!(
            (4_300..4_900).contains(&bare),
            "{bare} of 10000 features are null"
        );
    }
}
